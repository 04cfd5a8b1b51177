//! The agent on async-nats 0.50: the version the real kanade agent's newest lockfile
//! resolves (docs/fidelity.md), the default of the `kanade` and `legacy` profiles.

pub(crate) use ::async_nats_050 as nats;

// The same source as the other version's, on purpose: see `super`'s doc.
#[allow(clippy::duplicate_mod)]
#[path = "sim/mod.rs"]
pub(crate) mod sim;
