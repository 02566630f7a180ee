//! # agentsched
//!
//! Which scheduling policy, with which constants, makes agent workflows
//! finish fastest for the least money on given providers?
//!
//! ```text
//! scenario (JSON, flags, --set)
//!    -> workload: DAG blocks, arrivals, tokens        [keyed RNG]
//!    -> driver + policy: sim (virtual clock) | live (tokio clock)
//!    -> records: one per workflow, trace events
//!    -> metrics -> outputs (summary / workflows / tiers / trace)
//! ```
//!
//! The [`policy`] module is pure decision logic: it never touches the event
//! queue, tokio or a clock, so the simulator ([`sim`]) and a live executor
//! drive the very same policy objects.
//!
//! ```
//! use agentsched::{metrics::NullObserver, scenario::Scenario, sim};
//! let mut s = Scenario::default_research_agent();
//! s.workload.workflows = 3;
//! let result = sim::run(&s, &mut NullObserver);
//! assert_eq!(result.summary.workflows, 3);
//! assert!(result.summary.makespan_p95_ms > 0.0);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod bucket;
pub mod calibrate;
pub mod cli;
pub mod error;
pub mod fidelity;
pub mod live;
pub mod metrics;
pub mod minheap;
pub mod numtext;
pub mod output;
pub mod policy;
pub mod provider;
pub mod recorded;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod scenario;
pub mod sim;
pub mod stats;
pub mod sweep;
pub mod tune;
pub mod units;
pub mod validate;
pub mod workload;
