// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus adapter: identify the caller, authorize, call the core off the executor,
//! map errors. Nothing else lives here.

mod caller;
mod errors;
mod iface;
mod rate;

pub use caller::Identify;
pub use iface::{serve, AdminIface, LoginIface, UserIface};
