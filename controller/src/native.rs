//! The two Kafka admin calls the controller needs that the `rdkafka` crate
//! does not wrap, made on librdkafka directly: IncrementalAlterConfigs
//! (change only the named configs, atomically, leaving every other override
//! alone) and DescribeTopics (a topic's id, which changes when a topic is
//! deleted and made again under the same name).
//!
//! The only unsafe code of the workspace. Each call blocks until Kafka
//! answers or `timeout` passes (run it on a blocking thread); every object
//! it makes is owned by an [`Owned`] and destroyed on every path, after the
//! answer has arrived.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys as rd;
use rdkafka_sys::types::RDKafkaRespErr;

/// A librdkafka object, destroyed when dropped.
struct Owned<T> {
    ptr: *mut T,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr` (made by librdkafka, destroyed by `destroy`);
    /// a null pointer is an error.
    fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T), what: &str) -> Result<Self, String> {
        if ptr.is_null() {
            return Err(format!("librdkafka could not make {what}"));
        }
        Ok(Self { ptr, destroy })
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from librdkafka, is not null, and is destroyed
        // once, here, by its own destructor.
        unsafe { (self.destroy)(self.ptr) }
    }
}

/// A C string librdkafka gave, as text.
fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long
    // as the object they came from, which the caller still holds.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

/// Sends one admin request made by `request` and waits for its result
/// event; returns the event (holding the result) once Kafka answered.
fn call(
    client: &AdminClient<DefaultClientContext>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    request: impl FnOnce(*mut rd::rd_kafka_t, *mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Owned<rd::rd_kafka_event_t>, String> {
    let rk = client.inner().native_ptr();
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the live client `client` holds; every pointer made
    // here is owned and outlives the wait for the answer.
    unsafe {
        let queue = Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy, "a queue")?;
        let options = Owned::new(
            rd::rd_kafka_AdminOptions_new(rk, op),
            rd::rd_kafka_AdminOptions_destroy,
            "admin options",
        )?;
        let mut errstr = [0 as c_char; 256];
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(options.ptr, millis, errstr.as_mut_ptr(), errstr.len());
        if set != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(text(errstr.as_ptr()));
        }
        request(rk, options.ptr, queue.ptr);
        let event = rd::rd_kafka_queue_poll(queue.ptr, millis.saturating_add(1000));
        let event = Owned::new(event, rd::rd_kafka_event_destroy, "an answer")
            .map_err(|_| format!("Kafka did not answer within {timeout:?}"))?;
        if rd::rd_kafka_event_error(event.ptr) != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(text(rd::rd_kafka_event_error_string(event.ptr)));
        }
        Ok(event)
    }
}

/// Sets `configs` on `topic` with IncrementalAlterConfigs: only these
/// change, atomically; every other override stays as it is.
pub(crate) fn incremental_alter(
    client: &AdminClient<DefaultClientContext>,
    topic: &str,
    configs: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), String> {
    let name = c_string(topic)?;
    let entries: Vec<(CString, CString)> = configs
        .iter()
        .map(|(k, v)| Ok((c_string(k)?, c_string(v)?)))
        .collect::<Result<_, String>>()?;
    // SAFETY: the resource and the strings outlive the call and its answer;
    // result pointers are read while the event that owns them lives.
    unsafe {
        let resource = Owned::new(
            rd::rd_kafka_ConfigResource_new(rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr()),
            rd::rd_kafka_ConfigResource_destroy,
            "a config resource",
        )?;
        for (key, value) in &entries {
            let error = rd::rd_kafka_ConfigResource_add_incremental_config(
                resource.ptr,
                key.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            );
            if !error.is_null() {
                let error = Owned::new(error, rd::rd_kafka_error_destroy, "an error")?;
                return Err(text(rd::rd_kafka_error_string(error.ptr)));
            }
        }
        let mut resources = [resource.ptr];
        let event = call(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            timeout,
            |rk, options, queue| rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue),
        )?;
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.ptr);
        if result.is_null() {
            return Err("Kafka gave another answer than IncrementalAlterConfigs'".into());
        }
        let mut count = 0;
        let answered = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *answered.add(i);
            if rd::rd_kafka_ConfigResource_error(r) != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(format!(
                    "{topic}: {}",
                    text(rd::rd_kafka_ConfigResource_error_string(r))
                ));
            }
        }
        Ok(())
    }
}

/// The topic's id (base64, as Kafka's tools show it), or `None` when the
/// topic does not exist or the broker keeps no ids.
pub(crate) fn topic_id(
    client: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let name = c_string(topic)?;
    let mut names = [name.as_ptr()];
    // SAFETY: the collection and the name outlive the call and its answer;
    // result pointers are read while the event that owns them lives.
    unsafe {
        let topics = Owned::new(
            rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            rd::rd_kafka_TopicCollection_destroy,
            "a topic collection",
        )?;
        let event = call(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            timeout,
            |rk, options, queue| rd::rd_kafka_DescribeTopics(rk, topics.ptr, options, queue),
        )?;
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        if result.is_null() {
            return Err("Kafka gave another answer than DescribeTopics'".into());
        }
        let mut count = 0;
        let described = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if count == 0 {
            return Ok(None);
        }
        let description = *described;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null() {
            return match rd::rd_kafka_error_code(error) {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => Ok(None),
                _ => Err(format!("{topic}: {}", text(rd::rd_kafka_error_string(error)))),
            };
        }
        let id = rd::rd_kafka_TopicDescription_topic_id(description);
        if id.is_null() {
            return Ok(None);
        }
        let id = text(rd::rd_kafka_Uuid_base64str(id));
        // The null id (all zero bits) is what an older broker gives.
        Ok((!id.is_empty() && id != "AAAAAAAAAAAAAAAAAAAAAA").then_some(id))
    }
}
