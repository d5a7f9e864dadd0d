//! The access model on the MemoryStore: seeding once, persistence across a restart (a second
//! broker on the same store), grants and their refresh, limits, logins.

use super::*;
use crate::broker::{Broker, BrokerOptions};
use crate::storage::MemoryStore;

fn opts(users: &[&str]) -> BrokerOptions {
    BrokerOptions {
        users: users
            .iter()
            .map(|n| User {
                name: n.to_string(),
                password_hash: crate::password::hash_password(n),
                tags: vec!["administrator".into()],
            })
            .collect(),
        ..BrokerOptions::default()
    }
}

fn start(store: &Arc<MemoryStore>, users: &[&str]) -> Broker {
    let b = Broker::new(Arc::clone(store) as Arc<dyn Store>, opts(users));
    b.recover(crate::clock::now()).expect("recover");
    b
}

fn perm(user: &str, vhost: &str, c: &str, w: &str, r: &str) -> Permission {
    Permission {
        user: user.into(),
        vhost: vhost.into(),
        configure: c.into(),
        write: w.into(),
        read: r.into(),
    }
}

fn refused(r: BrokerResult<()>) -> String {
    match r {
        Err(BrokerError::AccessRefused(t)) => t,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_seed_is_stored_once_and_later_starts_load_the_store() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["admin"]);
    let a = b.access();
    assert!(a.user("admin").is_some());
    assert_eq!(
        a.vhost_info("/").expect("/").description,
        "Default virtual host"
    );
    b.put_vhost(VhostInfo {
        description: "team".into(),
        tags: vec!["t".into()],
        default_queue_type: Some("classic".into()),
        ..VhostInfo::named("empty")
    })
    .expect("vhost");
    a.put_user(User {
        name: "u".into(),
        password_hash: crate::password::hash_password("p"),
        tags: vec![],
    })
    .expect("user");
    a.put_permission(perm("u", "empty", "^c", "^w", "^r"))
        .expect("perm");
    a.put_topic_permission(TopicPermission {
        user: "u".into(),
        vhost: "empty".into(),
        exchange: "amq.topic".into(),
        write: "^{username}\\.".into(),
        read: ".*".into(),
    })
    .expect("topic");
    a.set_vhost_limits("empty", LimitMap::from([("max-queues".into(), 3)]))
        .expect("vhost limits");
    a.set_user_limits("u", LimitMap::from([("max-channels".into(), 2)]))
        .expect("user limits");
    drop(b);

    // A restart with other configured users: the store wins, the configuration is ignored.
    let b = start(&store, &["other"]);
    let a = b.access();
    assert!(a.user("other").is_none());
    assert!(a.user("admin").is_some());
    assert!(b.vhost("empty").is_some(), "an empty vhost survives");
    let info = a.vhost_info("empty").expect("info");
    assert_eq!(info.description, "team");
    assert_eq!(info.default_queue_type.as_deref(), Some("classic"));
    assert_eq!(info.limits.get("max-queues"), Some(&3));
    assert_eq!(
        a.permission("empty", "u"),
        Some(perm("u", "empty", "^c", "^w", "^r"))
    );
    assert_eq!(a.topic_permissions().len(), 1);
    assert_eq!(a.user_limits("u").get("max-channels"), Some(&2));
    assert!(a.authenticate("u", "p", true).is_ok());
}

#[test]
fn a_deleted_default_vhost_stays_deleted() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["admin"]);
    assert!(b.delete_vhost("/").expect("delete"));
    drop(b);
    let b = start(&store, &["admin"]);
    assert!(b.vhost("/").is_none());
    assert!(b.access().permissions().is_empty());
}

#[test]
fn grants_refuse_with_rabbitmq_texts() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["admin"]);
    let a = b.access();
    a.put_user(User {
        name: "u".into(),
        password_hash: String::new(),
        tags: vec![],
    })
    .expect("user");
    a.put_permission(perm("u", "/", "^u-conf.*", "^u-write.*", "^u-read.*"))
        .expect("perm");
    let g = a.grant("u", "/");
    assert!(
        g.authorize(Perm::Configure, Resource::Queue("u-conf-q"))
            .is_ok()
    );
    assert_eq!(
        refused(g.authorize(Perm::Configure, Resource::Queue("other"))),
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    assert_eq!(
        refused(g.authorize(Perm::Write, Resource::Exchange(""))),
        "access to exchange 'amq.default' in vhost '/' refused for user 'u'"
    );
    assert!(g.authorize(Perm::Read, Resource::Queue("u-read-q")).is_ok());
    // A user without permission in a vhost may do nothing there.
    let none = a.grant("u", "elsewhere");
    assert!(!none.has_vhost_access());
    assert!(
        none.authorize(Perm::Read, Resource::Queue("u-read-q"))
            .is_err()
    );
}

#[test]
fn topic_permissions_expand_the_user_name() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["u"]);
    let a = b.access();
    a.put_topic_permission(TopicPermission {
        user: "u".into(),
        vhost: "/".into(),
        exchange: "amq.topic".into(),
        write: "^{username}\\..*".into(),
        read: "^r\\..*".into(),
    })
    .expect("topic");
    let g = a.grant("u", "/");
    assert!(g.authorize_topic(Perm::Write, "amq.topic", "u.a").is_ok());
    assert_eq!(
        refused(g.authorize_topic(Perm::Write, "amq.topic", "v.a")),
        "access to topic 'v.a' in exchange 'amq.topic' in vhost '/' refused for user 'u'"
    );
    assert!(g.authorize_topic(Perm::Read, "amq.topic", "r.y").is_ok());
    assert!(g.authorize_topic(Perm::Read, "amq.topic", "x.y").is_err());
    // Other exchanges have no topic permission: every key is allowed.
    assert!(g.authorize_topic(Perm::Write, "other", "v.a").is_ok());
}

#[test]
fn a_changed_permission_reaches_a_grant_at_its_next_refresh() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["u"]);
    let a = b.access();
    let mut g = a.grant("u", "/");
    assert!(g.authorize(Perm::Configure, Resource::Queue("q")).is_ok());
    a.put_permission(perm("u", "/", "^nothing$", ".*", ".*"))
        .expect("perm");
    a.refresh(&mut g);
    assert!(g.authorize(Perm::Configure, Resource::Queue("q")).is_err());
    assert!(a.delete_permission("/", "u").expect("delete"));
    a.refresh(&mut g);
    assert!(g.authorize(Perm::Read, Resource::Queue("q")).is_err());
    let before = g.generation();
    a.refresh(&mut g);
    assert_eq!(g.generation(), before, "no change, no recompile");
}

#[test]
fn limits_admit_and_slots_give_back() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["u"]);
    let a = b.access();
    a.set_vhost_limits("/", LimitMap::from([("max-connections".into(), 1)]))
        .expect("limits");
    let (slot, _) = a.open_connection("u", "/").expect("first");
    assert_eq!(
        a.open_connection("u", "/").err().as_deref(),
        Some("access to vhost '/' refused for user 'u': connection limit (1) is reached")
    );
    drop(slot);
    let (slot, _) = a
        .open_connection("u", "/")
        .expect("again after the first closed");
    drop(slot);
    a.set_vhost_limits("/", LimitMap::new()).expect("clear");
    a.set_user_limits(
        "u",
        LimitMap::from([("max-connections".into(), 1), ("max-channels".into(), 2)]),
    )
    .expect("user limits");
    let (_slot, _) = a.open_connection("u", "/").expect("first");
    assert_eq!(
        a.open_connection("u", "/").err().as_deref(),
        Some("connection refused for user 'u': user connection limit (1) is reached")
    );
    let c1 = a.open_channel("u").expect("1");
    let _c2 = a.open_channel("u").expect("2");
    assert_eq!(
        a.open_channel("u").err().as_deref(),
        Some(
            "number of channels opened for user 'u' has reached the maximum allowed user limit of (2)"
        )
    );
    drop(c1);
    assert!(a.open_channel("u").is_ok());
    // A negative limit is no limit; 0 admits nobody.
    a.set_user_limits("u", LimitMap::from([("max-channels".into(), -1)]))
        .expect("limits");
    assert!(a.open_channel("u").is_ok());
    a.set_user_limits("u", LimitMap::from([("max-channels".into(), 0)]))
        .expect("limits");
    assert!(a.open_channel("u").is_err());
}

#[test]
fn logins_are_counted_and_loopback_users_stay_local() {
    let store = Arc::new(MemoryStore::new());
    let b = Broker::new(
        Arc::clone(&store) as Arc<dyn Store>,
        BrokerOptions::default(),
    );
    let a = b.access();
    assert!(a.authenticate("guest", "guest", true).is_ok());
    assert_eq!(
        a.authenticate("guest", "guest", false).err(),
        Some(LoginError::LoopbackOnly)
    );
    assert_eq!(
        a.authenticate("guest", "nope", true).err(),
        Some(LoginError::BadCredentials)
    );
    assert_eq!(
        a.authenticate("nobody", "guest", true).err(),
        Some(LoginError::BadCredentials)
    );
    assert_eq!(a.stats().attempts.load(Ordering::Relaxed), 4);
    assert_eq!(a.stats().failed.load(Ordering::Relaxed), 3);
    // EXTERNAL: no password, the same loopback rule and counters.
    assert!(a.authenticate_external("guest", true).is_ok());
    assert_eq!(
        a.authenticate_external("guest", false).err(),
        Some(LoginError::LoopbackOnly)
    );
    assert_eq!(
        a.authenticate_external("nobody", true).err(),
        Some(LoginError::BadCredentials)
    );
    assert_eq!(a.stats().failed.load(Ordering::Relaxed), 5);
}

#[test]
fn deleting_a_user_takes_its_permissions_and_limits() {
    let store = Arc::new(MemoryStore::new());
    let b = start(&store, &["u", "admin"]);
    let a = b.access();
    a.set_user_limits("u", LimitMap::from([("max-channels".into(), 2)]))
        .expect("limits");
    assert!(b.delete_user("u").expect("delete"));
    assert!(!a.has_permission("/", "u"));
    assert!(a.user_limits("u").is_empty());
    assert!(!b.delete_user("u").expect("again"));
    assert_eq!(
        a.put_permission(perm("u", "/", ".*", ".*", ".*"))
            .err()
            .map(|e| e.to_string()),
        Some("vhost_or_user_not_found".into())
    );
    drop(b);
    let b = start(&store, &[]);
    assert!(b.access().user("u").is_none());
    assert!(b.access().user("admin").is_some());
}
