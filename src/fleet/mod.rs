//! The fleet: the agents, their roster, and the splay that spreads their reconnects.

pub mod agent;
mod roster;
pub mod splay;

pub use roster::*;
