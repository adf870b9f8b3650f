// SPDX-License-Identifier: MIT OR Apache-2.0
//! The dicts the daemon returns carry exactly the keys `twostep_proto::status_key` and
//! `repair_key` name (issue 12 item 7): the built daemon on a private bus, asked with the
//! contract's own proxies, as root (its own `Status`, and the admin views of an enrolled
//! user). A key added or renamed on one side only fails here.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use twostep_e2e::client::CALL_TIMEOUT;
use twostep_e2e::{Stack, User};
use twostep_proto::{repair_key, status_key, AdminProxy, Properties, UserProxy};

fn keys(p: &Properties) -> BTreeSet<String> {
    p.keys().cloned().collect()
}

fn set(lists: &[&[&str]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter().map(|k| (*k).to_owned()))
        .collect()
}

#[test]
fn status_and_admin_dicts_carry_the_contract_keys() {
    twostep_e2e::require_root();
    let s = Stack::start();
    let user = User::create();
    s.ctl.enroll(&user);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (status, list, shown, repair) = rt.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, async {
            let conn = zbus::connection::Builder::address(s.bus.address())?
                .build()
                .await?;
            let me = UserProxy::new(&conn).await?;
            let admin = AdminProxy::new(&conn).await?;
            let status = me.status().await?;
            let list = admin.list_users().await?;
            let shown = admin.show_user(user.name()).await?;
            let repair = admin.repair_user(user.name(), false).await?;
            Ok::<_, zbus::Error>((status, list, shown, repair))
        })
        .await
        .expect("calls finish in time")
        .expect("calls succeed")
    });

    assert_eq!(keys(&status), set(&[status_key::STATUS]), "User1.Status");
    let entry = set(&[status_key::STATUS, status_key::ADMIN_EXTRA]);
    let mine = list
        .iter()
        .find(|p| {
            p.get(status_key::USER)
                .and_then(|v| <&str>::try_from(&**v).ok())
                == Some(user.name())
        })
        .unwrap_or_else(|| panic!("{} not in ListUsers", user.name()));
    assert_eq!(keys(mine), entry, "Admin1.ListUsers entry");
    assert_eq!(
        keys(&shown),
        set(&[
            status_key::STATUS,
            status_key::ADMIN_EXTRA,
            &[status_key::EVENTS]
        ]),
        "Admin1.ShowUser"
    );
    assert_eq!(keys(&repair), set(&[repair_key::ALL]), "Admin1.RepairUser");
    // The values behind the keys are the enrolled user's.
    assert_eq!(
        shown
            .get(status_key::ENROLLED)
            .and_then(|v| bool::try_from(&**v).ok()),
        Some(true)
    );
}
