// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus adapter: identify the caller (uid and unique name, from the bus), call the
//! core off the executor, map errors. The core authorizes (`core::authz`), so every path
//! into it — bus or signal — meets the same predicates. Nothing else lives here.

mod apppw;
mod caller;
mod email;
mod errors;
mod iface;
pub(crate) mod import;
pub mod peer;
mod rate;
mod store;

pub use caller::Identify;
pub use iface::{serve, AdminIface, LoginIface, UserIface};
pub use store::StoreIface;
