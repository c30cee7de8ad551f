//! Writes the ChatCluster CRD, generated from the Rust types, to `k8s/` and
//! the Helm chart. CI fails when the committed files differ from this output.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let yaml = whisper_controller::crd::crd_yaml();
    for path in ["k8s/crd.yaml", "charts/whisperrooms/crds/chatcluster.yaml"] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent folder"))?;
        std::fs::write(&path, &yaml)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
