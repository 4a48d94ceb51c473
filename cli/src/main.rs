//! The `grid` binary: the coordinator, the native worker and the client
//! commands. Everything lives in the library; see [`grid_cli`].

fn main() -> std::process::ExitCode {
    grid_cli::main()
}
