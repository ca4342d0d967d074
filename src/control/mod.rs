//! The control socket: the protocol both sides speak, the daemon's server and the
//! client the CLI uses.

pub mod client;
pub mod conns;
pub mod frame;
pub mod protocol;
pub mod server;
