//! `kubectl finrep`, the editor's plugin: copy this one file onto PATH as `kubectl-finrep`.
//! It links the plugin crate and the core's resource types alone (no database client code
//! is reached, no pipeline): docs/operator.md, "kubectl finrep".

fn main() -> std::process::ExitCode {
    finrep_kubectl::main()
}
