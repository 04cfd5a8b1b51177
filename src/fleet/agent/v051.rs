//! The agent on async-nats 0.51: fleetsim's own client, the default for every profile but
//! `kanade` and `legacy`.

pub(crate) use ::async_nats as nats;

// The same source as the other version's, on purpose: see `super`'s doc.
#[allow(clippy::duplicate_mod)]
#[path = "sim/mod.rs"]
pub(crate) mod sim;
