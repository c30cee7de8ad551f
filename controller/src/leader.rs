//! Leader election on a `coordination.k8s.io` Lease, so several controller
//! replicas can run and only one acts, as client-go elects: a replica takes
//! the lease when it is free, or when the record has not changed for a lease
//! duration *as this replica observed it* (its own monotonic clock, never the
//! holder's timestamps, so skewed clocks cannot end a live lease early). The
//! leader renews every retry period; each attempt has a deadline, and a
//! leader that has not renewed within the renew deadline (shorter than the
//! lease) stops acting (the process exits) before anyone else may take over.
//! Writes use the lease's resourceVersion, so two replicas never both win.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{PostParams, ResourceExt};
use tokio::time::Instant;

/// Timings of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// How long a lease holds without renewal.
    pub lease: Duration,
    /// How long the leader keeps acting without a successful renewal;
    /// shorter than `lease`, so it stops before another replica may start.
    pub renew_deadline: Duration,
    /// How often the leader renews, and others retry.
    pub retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// The lease record as this replica last saw it change, and when (by its
/// own clock).
#[derive(Debug, Clone)]
struct Observed {
    record: LeaseSpec,
    at: Instant,
}

/// One replica's side of the election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    observed: Arc<Mutex<Option<Observed>>>,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease.
    Leading,
    /// Another replica does.
    Following(String),
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timings: Timings) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: Arc::default(),
        }
    }

    /// Notes the record read now; returns how long it has been unchanged as
    /// this replica saw it.
    fn observe(&self, record: &LeaseSpec) -> Duration {
        let mut observed = self.observed.lock().expect("observed lease lock");
        match observed.as_ref() {
            Some(o) if o.record == *record => o.at.elapsed(),
            _ => {
                *observed = Some(Observed {
                    record: record.clone(),
                    at: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }

    /// Takes or renews the lease if this replica may, within one retry
    /// period (an answer later than that counts as an error).
    pub async fn try_acquire(&self) -> Result<Attempt, kube::Error> {
        match tokio::time::timeout(self.timings.retry, self.attempt()).await {
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(
                format!("no answer from the API server within {:?}", self.timings.retry).into(),
            )),
        }
    }

    async fn attempt(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following("another replica".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let expired = self.observe(&spec) > duration;
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            self.spec(spec.acquire_time.map_or(now, |t| t.0), now, transitions)
        } else if expired || holder.is_empty() {
            self.spec(now, now, transitions + 1)
        } else {
            return Ok(Attempt::Following(holder));
        };
        lease.spec = Some(new_spec);
        // Replace carries the resourceVersion read above: a concurrent
        // writer makes this fail with a conflict instead of both winning.
        match self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written.spec.unwrap_or_default());
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(holder)),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.lease.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Gives the lease up on a clean shutdown, so a standby takes over at
    /// once instead of after the lease duration.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        let mut last_holder = String::new();
        loop {
            match self.try_acquire().await {
                Ok(Attempt::Leading) => return,
                Ok(Attempt::Following(holder)) => {
                    if holder != last_holder {
                        tracing::info!(holder, "another replica leads; standing by");
                        last_holder = holder;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the leader lease"),
            }
            tokio::time::sleep(self.timings.retry).await;
        }
    }

    /// Renews the lease until it cannot; returns when leadership is lost
    /// (another replica took it, or renewals failed for a lease duration).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timings.retry).await;
            match self.try_acquire().await {
                Ok(Attempt::Leading) => last_renewal = tokio::time::Instant::now(),
                Ok(Attempt::Following(holder)) => {
                    tracing::error!(holder, "lost the leader lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    // Stop before the lease can expire and another replica act.
                    if last_renewal.elapsed() + self.timings.retry >= self.timings.renew_deadline {
                        tracing::error!("could not renew the leader lease within the renew deadline");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server that accepts connections and never answers.
    async fn silent_api_server() -> (Api<Lease>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        (Api::namespaced(client, "default"), task)
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_hang_stops_within_the_renew_deadline() {
        let (api, server) = silent_api_server().await;
        let timings = Timings {
            lease: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry: Duration::from_millis(300),
        };
        let elector = Elector::new(api, "lease", "me", timings);
        let started = Instant::now();
        tokio::time::timeout(timings.lease, elector.hold())
            .await
            .expect("hold() must give up before the lease could pass to another replica");
        assert!(started.elapsed() < timings.lease, "{:?}", started.elapsed());
        server.abort();
    }
}
