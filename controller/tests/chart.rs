//! The Helm chart (`charts/whisperrooms`) and the plain manifests (`k8s/`)
//! against the real kube-apiserver and Kafka: `helm lint --strict`, the drift
//! check of `k8s/`, every rendered object accepted by the API server, and the
//! README's install steps — `helm install`, then the controller running with
//! the chart's ServiceAccount and settings turns the example ChatCluster into
//! a real Kafka topic.
//!
//! Tools and services come from the environment, as in `tests/kube.rs`:
//! `WHISPER_HELM`, `WHISPER_KUBECTL` and `WHISPER_TEST_KUBECONFIG` from
//! `eval "$(scripts/kube env)"`, `WHISPER_TEST_KAFKA_BROKERS` from
//! `eval "$(scripts/services env)"`. Under `CI=true` a missing one fails the
//! test; elsewhere the test is skipped.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

mod common;
use common::{eventually, service, topic, uuid_like};

/// Paths relative to the repository root, where every command runs.
const CHART: &str = "charts/whisperrooms";
const ALL_ON: &str = "charts/whisperrooms/ci/all-on-values.yaml";
const MONITORING_CRDS: &str = "controller/tests/fixtures/monitoring-crds.yaml";
/// The field manager of what these tests apply for real.
const MANAGER: &str = "whisper-chart-tests";
/// The chart's appVersion: the controller's own version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the repository")
        .to_path_buf()
}

/// A fresh scratch directory.
fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a command did.
#[derive(Debug)]
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Stdout, or fails the test showing both streams.
    fn expect(self, what: &str) -> String {
        assert!(
            self.ok,
            "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command in the repository root.
fn run(command: &mut Command) -> Output {
    let out = command
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// helm, kubectl and the test API server's admin kubeconfig.
struct Kube {
    kubeconfig: String,
    kubectl: String,
    helm: String,
}

impl Kube {
    fn from_env() -> Option<Kube> {
        Some(Kube {
            kubeconfig: service("WHISPER_TEST_KUBECONFIG")?,
            kubectl: service("WHISPER_KUBECTL")?,
            helm: service("WHISPER_HELM")?,
        })
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args)
    }

    fn kubectl_as(&self, kubeconfig: &str, args: &[&str]) -> Output {
        run(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args))
    }

    fn helm(&self, args: &[&str]) -> Output {
        run(Command::new(&self.helm).args(args).env("KUBECONFIG", &self.kubeconfig))
    }

    /// A `kubectl get -o json` of one object, if it exists.
    fn get(&self, namespace: &str, what: &[&str]) -> Option<Value> {
        let mut args = vec!["get", "-n", namespace, "-o", "json"];
        args.extend_from_slice(what);
        let out = self.kubectl(&args);
        out.ok.then(|| serde_json::from_str(&out.stdout).unwrap())
    }

    /// A fresh namespace.
    fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", &uuid_like()[..10]);
        self.kubectl(&["create", "namespace", &name])
            .expect("kubectl create namespace");
        name
    }

    /// Waits until the CRDs serve.
    fn wait_established(&self, crds: &[&str]) {
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let names: Vec<String> = crds.iter().map(|c| format!("crd/{c}")).collect();
        args.extend(names.iter().map(String::as_str));
        self.kubectl(&args).expect("kubectl wait for the CRDs");
    }

    /// Installs the ChatCluster CRD and the stand-in monitoring CRDs for real
    /// (server-side apply: idempotent next to other tests doing the same).
    fn install_crds(&self) {
        self.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            MANAGER,
            "-f",
            "k8s/crd.yaml",
            "-f",
            MONITORING_CRDS,
        ])
        .expect("applying the CRDs");
        self.wait_established(&[
            "chatclusters.whisperrooms.io",
            "servicemonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
        ]);
    }
}

/// The objects of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_and_name(object: &Value) -> (String, String) {
    (
        object["kind"].as_str().unwrap().to_owned(),
        object["metadata"]["name"].as_str().unwrap().to_owned(),
    )
}

/// `kubectl apply --dry-run=server` of `files` (server-side apply or, with
/// `server_side` false, kubectl's classic apply); asserts the API server
/// accepted the command and each of `objects` by name.
fn dry_run_apply(kube: &Kube, server_side: bool, namespace: Option<&str>, files: &[&str], objects: &[Value]) {
    let mut args = vec!["apply", "--dry-run=server"];
    if server_side {
        args.extend(["--server-side", "--force-conflicts"]);
    }
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    for file in files {
        args.extend(["-f", file]);
    }
    let out = kube.kubectl(&args).expect(&format!("dry-run apply of {files:?}"));
    assert!(!objects.is_empty(), "nothing to apply in {files:?}");
    for object in objects {
        let (kind, name) = kind_and_name(object);
        // e.g. `clusterrole.rbac.authorization.k8s.io/x serverside-applied (server dry run)`
        // or `namespace/whisperrooms unchanged (server dry run)`
        let kind = kind.to_lowercase();
        let accepted = out.lines().any(|line| {
            line.ends_with(" (server dry run)")
                && line.split_once('/').is_some_and(|(resource, rest)| {
                    (resource == kind || resource.starts_with(&format!("{kind}.")))
                        && rest.starts_with(&format!("{name} "))
                })
        });
        assert!(accepted, "{kind}/{name} of {files:?} not accepted:\n{out}");
    }
}

/// JSON pointers of every `enabled` key under `value`.
fn toggles(value: &Value, at: &str) -> Vec<String> {
    let Some(map) = value.as_object() else { return vec![] };
    map.iter()
        .flat_map(|(key, v)| {
            let here = format!("{at}/{key}");
            if key == "enabled" {
                vec![here]
            } else {
                toggles(v, &here)
            }
        })
        .collect()
}

#[test]
fn helm_lint_strict_passes_with_defaults_and_every_toggle_on_and_the_schema_refuses_bad_values() {
    let Some(helm) = service("WHISPER_HELM") else { return };
    let lint = |extra: &[&str]| run(Command::new(&helm).args(["lint", "--strict", CHART]).args(extra));
    lint(&[]).expect("helm lint --strict with the defaults");
    lint(&["-f", ALL_ON]).expect("helm lint --strict with every toggle on");
    // The all-on values really turn on every toggle (`enabled` key) of
    // values.yaml.
    let read =
        |path: &str| -> Value { serde_yaml::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap() };
    let (defaults, all_on) = (read(&format!("{CHART}/values.yaml")), read(ALL_ON));
    let toggles = toggles(&defaults, "");
    assert!(toggles.len() >= 4, "toggles of values.yaml: {toggles:?}");
    for toggle in &toggles {
        let on = all_on.pointer(toggle).or(defaults.pointer(toggle));
        assert_eq!(on, Some(&json!(true)), "{ALL_ON} leaves {toggle} off");
    }
    // values.schema.json: unknown keys and wrong types are refused by name.
    for (set, says) in [
        ("controller.replicaz=2", "replicaz"),
        ("controller.replicas=-1", "replicas"),
        ("controller.resync=often", "resync"),
        ("serviceMonitor.enabled=maybe", "enabled"),
    ] {
        let out = lint(&["--set", set]);
        assert!(!out.ok, "helm lint accepted --set {set}");
        assert!(out.text().contains(says), "--set {set}: no `{says}` in\n{}", out.text());
    }
}

#[test]
fn k8s_is_what_the_chart_generates_and_the_check_catches_drift() {
    let Some(helm) = service("WHISPER_HELM") else { return };
    let check = |root: &Path| {
        run(Command::new(root.join("scripts/manifests"))
            .arg("--check")
            .env("WHISPER_HELM", &helm))
    };
    let out = check(&repo());
    assert!(
        out.ok,
        "k8s/ differs from the chart: run scripts/manifests\n{}",
        out.text()
    );

    // A copy of the inputs, to change without touching the working tree.
    let copy = temp_dir("manifests");
    std::fs::create_dir_all(copy.join("scripts")).unwrap();
    std::fs::create_dir_all(copy.join("charts")).unwrap();
    std::fs::copy(repo().join("scripts/manifests"), copy.join("scripts/manifests")).unwrap();
    run(Command::new("cp").args(["-R", CHART]).arg(copy.join("charts"))).expect("cp chart");
    run(Command::new("cp").args(["-R", "k8s"]).arg(&copy)).expect("cp k8s");
    check(&copy).expect("--check of an unchanged copy");

    // A hand edit of k8s/ is caught, with a diff.
    let manifest = copy.join("k8s/whisperrooms.yaml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, original.replace("replicas: 1", "replicas: 4")).unwrap();
    let out = check(&copy);
    assert!(!out.ok, "--check passed a hand-edited k8s/whisperrooms.yaml");
    let text = out.text();
    assert!(
        text.contains("-  replicas: 4") && text.contains("+  replicas: 1") && text.contains("scripts/manifests"),
        "{text}"
    );

    // A chart change not carried into k8s/ is caught; regenerating fixes it.
    std::fs::write(&manifest, &original).unwrap();
    let values = copy.join(CHART).join("values.yaml");
    let text = std::fs::read_to_string(&values).unwrap();
    std::fs::write(&values, text.replace("logLevel: info", "logLevel: debug")).unwrap();
    let out = check(&copy);
    assert!(
        !out.ok && out.text().contains("+              value: \"debug\""),
        "{}",
        out.text()
    );
    run(Command::new(copy.join("scripts/manifests")).env("WHISPER_HELM", &helm)).expect("scripts/manifests");
    check(&copy).expect("--check after regenerating");
    let example = std::fs::read_to_string(copy.join("k8s/example-chatcluster.yaml")).unwrap();
    assert!(example.starts_with("# Generated by scripts/manifests"), "{example}");
    let _ = std::fs::remove_dir_all(copy);
}

#[test]
fn every_rendered_object_and_every_k8s_manifest_is_accepted_by_the_api_server() {
    let Some(kube) = Kube::from_env() else { return };
    kube.install_crds();
    let namespace = kube.namespace("chart-dry");
    let dir = temp_dir("rendered");

    // All on, the controller watches one namespace (that one, so that the
    // dry run finds it): its rules are bound there only.
    let watch = format!("controller.watchNamespace={namespace}");
    for (label, extra) in [("defaults", &[][..]), ("all-on", &["-f", ALL_ON, "--set", &watch][..])] {
        let mut args = vec!["template", "dry", CHART, "--namespace", &namespace];
        args.extend_from_slice(extra);
        let rendered = kube.helm(&args).expect(&format!("helm template ({label})"));
        let objects = documents(&rendered);
        let kinds: Vec<String> = objects.iter().map(|o| kind_and_name(o).0).collect();
        let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
        let one_namespace = label == "all-on";
        for (kind, n) in [
            ("ServiceAccount", 1),
            // The controller's rules, and the one that reads its CRD (bound
            // cluster-wide in every install: CRDs are not namespaced).
            ("ClusterRole", 2),
            ("ClusterRoleBinding", 1 + usize::from(!one_namespace)),
            ("Role", 1),
            ("RoleBinding", 1 + usize::from(one_namespace)),
            ("Service", 1),
            ("Deployment", 1),
        ] {
            assert_eq!(count(kind), n, "{label}: {kind} in {kinds:?}");
        }
        let bindings: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
            .collect();
        assert!(
            bindings.iter().any(|b| b["roleRef"]["kind"] == "ClusterRole"
                && (!one_namespace || b["metadata"]["namespace"] == json!(namespace))),
            "{label}: the ClusterRole is bound {}: {bindings:?}",
            if one_namespace {
                "in the watched namespace"
            } else {
                "cluster-wide"
            }
        );
        let optional = [
            ("ServiceMonitor", 2),
            ("PrometheusRule", 1),
            ("ConfigMap", 1),
            ("ChatCluster", 1),
        ];
        for (kind, n) in optional {
            let want = if label == "all-on" { n } else { 0 };
            assert_eq!(count(kind), want, "{label}: {kind} in {kinds:?}");
        }
        let file = dir.join(format!("{label}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        dry_run_apply(&kube, true, Some(&namespace), &[file.to_str().unwrap()], &objects);
    }

    // k8s/ as a user applies it. A dry-run Namespace holds nothing, so the
    // one of k8s/whisperrooms.yaml is created for real first.
    let mut objects = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        objects.extend(documents(&std::fs::read_to_string(file).unwrap()));
    }
    let names: Vec<(String, String)> = objects.iter().map(kind_and_name).collect();
    for want in [
        ("CustomResourceDefinition", "chatclusters.whisperrooms.io"),
        ("Namespace", "whisperrooms"),
        ("Deployment", "whisperrooms-controller"),
        ("ChatCluster", "demo"),
    ] {
        assert!(
            names.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in k8s/: {names:?}"
        );
    }
    let ns_object = objects.iter().find(|o| o["kind"] == "Namespace").unwrap();
    let ns_file = dir.join("namespace.json");
    std::fs::write(&ns_file, ns_object.to_string()).unwrap();
    kube.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        MANAGER,
        "-f",
        ns_file.to_str().unwrap(),
    ])
    .expect("creating the whisperrooms namespace");
    // Every file of k8s/; the example ChatCluster names no namespace: it
    // goes to the kubeconfig's.
    dry_run_apply(&kube, true, None, &["k8s/"], &objects);
    // README: kubectl apply -f k8s/crd.yaml -f k8s/whisperrooms.yaml
    let readme: Vec<Value> = objects.iter().filter(|o| o["kind"] != "ChatCluster").cloned().collect();
    dry_run_apply(&kube, false, None, &["k8s/crd.yaml", "k8s/whisperrooms.yaml"], &readme);
    let _ = std::fs::remove_dir_all(dir);
}

/// A local `whisper-controller` process, killed on drop; its log is shown
/// when the test fails.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- whisper-controller log\n{}", self.log());
        }
    }
}

/// A Helm release, uninstalled on drop when the test did not get to it, so
/// a failed run leaves no ClusterRole behind on the shared API server.
struct Release<'a> {
    kube: &'a Kube,
    name: String,
    namespace: String,
    installed: bool,
}

impl Release<'_> {
    fn uninstall(&mut self) -> Output {
        self.installed = false;
        self.kube.helm(&["uninstall", &self.name, "-n", &self.namespace])
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.uninstall();
        }
    }
}

/// The admin kubeconfig with a ServiceAccount token instead of the admin's.
fn kubeconfig_with_token(admin: &str, token: &str, path: &Path) {
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    let users = config["users"].as_sequence_mut().expect("users in the kubeconfig");
    for user in users {
        user["user"] = serde_yaml::to_value(BTreeMap::from([("token", token)])).unwrap();
    }
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

#[tokio::test]
async fn helm_install_then_the_controller_with_the_charts_service_account_turns_the_example_into_a_topic() {
    let Some(kube) = Kube::from_env() else { return };
    let Some(brokers) = service("WHISPER_TEST_KAFKA_BROKERS") else {
        return;
    };
    let id = uuid_like();
    // README: helm install whisperrooms charts/whisperrooms -n whisperrooms --create-namespace \
    //   --set controller.image.repository=... --set gateway.image.repository=...
    // Here with a release and namespace of its own: the API server is shared,
    // and its ClusterRole names must not collide.
    let namespace = format!("chart-{}", &id[..10]);
    let release = format!("wr-{}", &id[10..18]);
    kube.helm(&[
        "install",
        &release,
        CHART,
        "-n",
        &namespace,
        "--create-namespace",
        "--set",
        "controller.image.repository=registry.example/whisperrooms/controller",
        "--set",
        "gateway.image.repository=registry.example/whisperrooms/gateway",
    ])
    .expect("helm install");
    let mut installed = Release {
        kube: &kube,
        name: release.clone(),
        namespace: namespace.clone(),
        installed: true,
    };
    kube.wait_established(&["chatclusters.whisperrooms.io"]);

    // What the chart installed, named after the release.
    let name = format!("{release}-whisperrooms-controller");
    for what in [
        ["serviceaccount", name.as_str()],
        ["service", &format!("{name}-metrics")],
        ["role", &format!("{name}-leader")],
        ["rolebinding", &format!("{name}-leader")],
        ["clusterrole", name.as_str()],
        ["clusterrolebinding", name.as_str()],
        ["clusterrole", &format!("{name}-crd")],
        ["clusterrolebinding", &format!("{name}-crd")],
    ] {
        assert!(kube.get(&namespace, &what).is_some(), "helm install made no {what:?}");
    }
    let deployment = kube
        .get(&namespace, &["deployment", &name])
        .expect("the controller Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], json!(name));
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        json!(format!("registry.example/whisperrooms/controller:{VERSION}"))
    );
    let env = container["env"].as_array().unwrap();
    let settings: BTreeMap<String, String> = env
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
        .collect();
    assert_eq!(settings["WHISPER_LEASE_NAMESPACE"], namespace);
    assert_eq!(settings["WHISPER_LEADER_ELECTION"], "true");
    assert_eq!(
        settings["WHISPER_GATEWAY_IMAGE"],
        format!("registry.example/whisperrooms/gateway:{VERSION}")
    );
    for (var, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        assert!(
            env.iter()
                .any(|e| e["name"] == var && e["valueFrom"]["fieldRef"]["fieldPath"] == field),
            "{var} is not the pod's {field}: {env:?}"
        );
    }

    // The controller gets a token of the chart's ServiceAccount: exactly the
    // chart's RBAC, nothing of the admin's.
    let token = kube
        .kubectl(&["create", "token", &name, "-n", &namespace, "--duration=1h"])
        .expect("kubectl create token");
    let dir = temp_dir("chart-install");
    let kubeconfig = dir.join("kubeconfig");
    kubeconfig_with_token(&kube.kubeconfig, token.trim(), &kubeconfig);
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    for (allowed, args) in [
        (true, vec!["watch", "chatclusters.whisperrooms.io", "--all-namespaces"]),
        (
            true,
            vec![
                "patch",
                "chatclusters.whisperrooms.io",
                "--subresource=status",
                "-n",
                "default",
            ],
        ),
        (true, vec!["patch", "deployments.apps", "-n", "default"]),
        (
            true,
            vec!["delete", "horizontalpodautoscalers.autoscaling", "-n", "default"],
        ),
        (true, vec!["create", "events.events.k8s.io", "-n", "default"]),
        (true, vec!["update", "leases.coordination.k8s.io", "-n", &namespace]),
        (false, vec!["update", "leases.coordination.k8s.io", "-n", "default"]),
        (false, vec!["delete", "leases.coordination.k8s.io", "-n", &namespace]),
        (false, vec!["create", "chatclusters.whisperrooms.io", "-n", "default"]),
        (false, vec!["delete", "chatclusters.whisperrooms.io", "-n", "default"]),
        // Exactly the verbs the controller calls (owned objects come from
        // its watch caches: no get; only the HPA and PDB are ever deleted).
        (false, vec!["get", "deployments.apps", "-n", "default"]),
        (false, vec!["delete", "deployments.apps", "-n", "default"]),
        (false, vec!["update", "deployments.apps", "-n", "default"]),
        (false, vec!["delete", "services", "-n", "default"]),
        (false, vec!["update", "chatclusters.whisperrooms.io", "-n", "default"]),
        (true, vec!["get", "chatclusters.whisperrooms.io", "-n", "default"]),
        // Secrets: read, and their changes watched; never written.
        (true, vec!["get", "secrets", "-n", "default"]),
        (true, vec!["watch", "secrets", "-n", "default"]),
        (false, vec!["update", "secrets", "-n", "default"]),
        (false, vec!["create", "secrets", "-n", "default"]),
        // Its own CRD's schema version, and no other CRD.
        (
            true,
            vec![
                "get",
                "customresourcedefinitions.apiextensions.k8s.io/chatclusters.whisperrooms.io",
            ],
        ),
        (
            false,
            vec![
                "get",
                "customresourcedefinitions.apiextensions.k8s.io/leases.coordination.k8s.io",
            ],
        ),
        (false, vec!["list", "pods", "-n", "default"]),
        (false, vec!["create", "configmaps", "-n", "default"]),
        (false, vec!["create", "events", "-n", "default"]),
    ] {
        let mut can_i = vec!["auth", "can-i"];
        can_i.extend(args.iter().copied());
        let out = kube.kubectl_as(&kubeconfig, &can_i);
        assert_eq!(
            out.stdout.trim(),
            if allowed { "yes" } else { "no" },
            "the chart's ServiceAccount: can-i {args:?}\n{}",
            out.stderr
        );
    }

    // The controller binary, with the settings of the chart's Deployment
    // (every plain value; the fieldRef ones as the kubelet would fill them),
    // listening on a free local port and watching the test namespace only.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.join("controller.log");
    let log_file = File::create(&log).unwrap();
    let pod_name = format!("{name}-0");
    let child = Command::new(env!("CARGO_BIN_EXE_whisper-controller"))
        .envs(&settings)
        .env("POD_NAME", &pod_name)
        .env("POD_NAMESPACE", &namespace)
        .env("KUBECONFIG", &kubeconfig)
        .env("WHISPER_LISTEN", format!("127.0.0.1:{port}"))
        .env("WHISPER_WATCH_NAMESPACE", &namespace)
        .env("NO_COLOR", "1")
        .env_remove("WHISPER_CONTROLLER_ID")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let controller = Controller {
        child,
        log: log.clone(),
    };

    // README: kubectl apply -f k8s/example-chatcluster.yaml, here a copy
    // pointed at the test Kafka, with a topic of its own.
    let example = std::fs::read_to_string(repo().join("k8s/example-chatcluster.yaml")).unwrap();
    let mut objects = documents(&example);
    assert_eq!(objects.len(), 1, "k8s/example-chatcluster.yaml holds one object");
    let mut cluster = objects.remove(0);
    let cluster_name = cluster["metadata"]["name"].as_str().unwrap().to_owned();
    let retention = cluster["spec"]["kafka"]["retentionMs"].as_i64().unwrap();
    let topic_name = format!("chart-{}", &id[..12]);
    let kafka = &mut cluster["spec"]["kafka"];
    kafka["bootstrapServers"] = json!(brokers);
    kafka["replicationFactor"] = json!(1);
    kafka["partitions"] = json!(3);
    kafka["topic"] = json!(topic_name);
    kafka["deletionPolicy"] = json!("Delete");
    let copy = dir.join("example-chatcluster.yaml");
    std::fs::write(&copy, serde_yaml::to_string(&cluster).unwrap()).unwrap();
    kube.kubectl(&["apply", "-n", &namespace, "-f", copy.to_str().unwrap()])
        .expect("kubectl apply of the example ChatCluster");

    let (partitions, configs) = eventually("the topic exists in Kafka", || topic(&brokers, &topic_name)).await;
    assert_eq!(partitions, 3);
    assert_eq!(configs.get("retention.ms"), Some(&retention.to_string()));

    let table = eventually("kubectl get chat shows the topic ready", || async {
        let out = kube.kubectl(&["get", "chat", "-n", &namespace]);
        let cluster = kube.get(&namespace, &["chatcluster", &cluster_name])?;
        let topic_ready = cluster["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "TopicReady" && c["status"] == "True");
        (out.ok && topic_ready && out.stdout.contains(&topic_name)).then_some(out.stdout)
    })
    .await;
    assert!(
        table.contains(&cluster_name) && table.contains(&retention.to_string()),
        "{table}"
    );
    eventually(
        "kubectl describe chatcluster shows the conditions and events",
        || async {
            let out = kube.kubectl(&["describe", "chatcluster", &cluster_name, "-n", &namespace]);
            let text = out.stdout;
            (out.ok && text.contains("TopicReady") && text.contains("TopicCreated") && text.contains("GatewaysCreated"))
                .then_some(())
        },
    )
    .await;

    // The gateways run the chart's gateway image; the controller leads on
    // the Lease in the release namespace.
    let gateways = eventually("the gateway Deployment exists", || async {
        kube.get(&namespace, &["deployment", &format!("{cluster_name}-gateway")])
    })
    .await;
    assert_eq!(
        gateways["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!("registry.example/whisperrooms/gateway:{VERSION}"))
    );
    let lease = kube
        .get(&namespace, &["lease", "whisper-controller"])
        .expect("the leader Lease");
    assert_eq!(lease["spec"]["holderIdentity"], json!(pod_name));

    // Deletion with deletionPolicy Delete: the finalizer runs and goes.
    kube.kubectl(&["delete", "chatcluster", &cluster_name, "-n", &namespace, "--wait=false"])
        .expect("kubectl delete chatcluster");
    eventually("the topic is deleted", || async {
        topic(&brokers, &topic_name).await.is_none().then_some(())
    })
    .await;
    eventually("the ChatCluster is gone", || async {
        kube.get(&namespace, &["chatcluster", &cluster_name])
            .is_none()
            .then_some(())
    })
    .await;

    // Nothing the controller did was refused.
    let text = controller.log();
    for refused in [
        "forbidden",
        "Forbidden",
        "cannot record event",
        "cannot read the leader lease",
    ] {
        assert!(!text.contains(refused), "the controller log says `{refused}`:\n{text}");
    }
    drop(controller);

    installed.uninstall().expect("helm uninstall");
    assert!(
        kube.get(&namespace, &["clusterrole", &name]).is_none(),
        "helm uninstall left the ClusterRole"
    );
    let _ = std::fs::remove_dir_all(dir);
}
