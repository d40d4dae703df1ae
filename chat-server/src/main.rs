//! The reference chat service. Not built yet: the broker it runs on comes
//! first. Running it says so and exits with a failure status, so that no
//! script mistakes it for a working server.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "chat-server {}: not built yet; the STOMP broker it runs on is in progress (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
