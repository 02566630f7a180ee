//! One integration-test binary, a module per behaviour.

mod audit;
mod bench;
mod calibrate;
mod cli;
mod fidelity;
mod hostile;
mod http_proxy;
mod invariants;
mod live_loopback;
mod live_sweep;
mod openai_like;
mod parity;
mod queueing;
mod spend;
mod sweep;
mod tls_proxy;
mod tune;
mod util;
