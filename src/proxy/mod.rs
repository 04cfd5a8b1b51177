//! The fault proxy between the agents and the broker: in fleetsim's own process
//! ([`in_process`]) or as a child process driven over a control connection ([`process`]).

pub mod in_process;
pub mod process;
