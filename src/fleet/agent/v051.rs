//! The agent on async-nats 0.51: fleetsim's own client, the default for every profile but `kanade` and `legacy`.

pub(crate) use ::async_nats as nats;

#[path = "sim/mod.rs"]
pub(crate) mod sim;
