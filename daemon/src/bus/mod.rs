// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus adapter: identify the caller (uid and unique name, from the bus; on the login
//! socket, [`peer`], uid from `SO_PEERCRED` and a name per connection), call the core off
//! the executor, map errors. The core authorizes (`core::authz`), so every path into it —
//! bus, login socket or signal — meets the same predicates. Nothing else lives here.

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
