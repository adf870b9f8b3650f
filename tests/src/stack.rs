// SPDX-License-Identifier: MIT OR Apache-2.0
//! The usual arrangement in one value: a system-like bus with the shipped policy, a root
//! `twostepd` on it, a CLI client and a PAM service naming the built module.

use crate::{Bus, Ctl, Daemon, DaemonConfig, PamService};

/// Fields drop in declaration order: the PAM file first, the bus last.
pub struct Stack {
    pub pam: PamService,
    pub ctl: Ctl,
    pub daemon: Daemon,
    pub bus: Bus,
}

impl Stack {
    /// Default daemon config, no extra module arguments.
    pub fn start() -> Stack {
        Stack::start_with(DaemonConfig::default(), "")
    }

    /// `config` for the daemon, `module_args` after `bus=…` in the PAM line.
    pub fn start_with(config: DaemonConfig, module_args: &str) -> Stack {
        let bus = Bus::start();
        let daemon = Daemon::start_with(&bus, config);
        let pam = PamService::twostep(bus.address(), module_args);
        let ctl = Ctl::new(&bus);
        Stack {
            pam,
            ctl,
            daemon,
            bus,
        }
    }
}
