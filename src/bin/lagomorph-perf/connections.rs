//! `connections`: open many connections with one channel each, report how long that took,
//! hold them (so the broker's memory can be sampled), then close them.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::cli::ConnectionsArgs;
use crate::client::{Conn, Uri};
use crate::report::Json;

/// What a `connections` run measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnectionsSummary {
    /// Connections asked for.
    pub(crate) requested: u32,
    /// Connections (with their channel) that opened.
    pub(crate) opened: u32,
    /// Seconds from the first connect to the last channel.open-ok.
    pub(crate) open_seconds: f64,
    /// The first few errors.
    pub(crate) errors: Vec<String>,
}

impl ConnectionsSummary {
    /// Human-readable.
    pub(crate) fn text(&self) -> String {
        let mut s = format!(
            "connections: {} of {} opened (one channel each) in {:.3} s ({:.2} ms each)\n",
            self.opened,
            self.requested,
            self.open_seconds,
            if self.opened > 0 {
                self.open_seconds * 1000.0 / f64::from(self.opened)
            } else {
                0.0
            }
        );
        for e in &self.errors {
            s += &format!("error: {e}\n");
        }
        s
    }

    /// JSON.
    pub(crate) fn json(&self) -> String {
        Json::new()
            .uint("requested", u64::from(self.requested))
            .uint("opened", u64::from(self.opened))
            .float("open_seconds", self.open_seconds)
            .strs("errors", &self.errors)
            .bool(
                "clean",
                self.opened == self.requested && self.errors.is_empty(),
            )
            .finish()
    }
}

/// Opens, holds, closes.
pub(crate) async fn run(a: &ConnectionsArgs) -> Result<ConnectionsSummary, String> {
    let uri = Uri::parse(&a.uri).map_err(|e| e.to_string())?;
    let parallel = a.parallel.max(1) as usize;
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut conns: Vec<Conn> = Vec::with_capacity(a.count as usize);
    let mut errors = Vec::new();
    let mut collect = |r: Result<crate::client::Result<Conn>, tokio::task::JoinError>,
                       conns: &mut Vec<Conn>| match r {
        Ok(Ok(c)) => conns.push(c),
        Ok(Err(e)) if errors.len() < 5 => errors.push(e.to_string()),
        Err(e) if errors.len() < 5 => errors.push(e.to_string()),
        _ => {}
    };
    for i in 0..a.count {
        if set.len() >= parallel
            && let Some(r) = set.join_next().await
        {
            collect(r, &mut conns);
        }
        let uri = uri.clone();
        set.spawn(async move {
            let mut c = Conn::connect(&uri, &format!("lagomorph-perf idle {i}")).await?;
            c.open_channel(1).await?;
            Ok(c)
        });
    }
    while let Some(r) = set.join_next().await {
        collect(r, &mut conns);
    }
    let open_seconds = start.elapsed().as_secs_f64();
    let opened = conns.len() as u32;
    eprintln!(
        "connections: {opened} open after {open_seconds:.3} s; holding {:.1} s",
        a.hold
    );
    tokio::time::sleep(Duration::from_secs_f64(a.hold.max(0.0))).await;
    let mut closing = JoinSet::new();
    for c in conns {
        closing.spawn(c.close());
        if closing.len() >= parallel {
            let _ = closing.join_next().await;
        }
    }
    while closing.join_next().await.is_some() {}
    Ok(ConnectionsSummary {
        requested: a.count,
        opened,
        open_seconds,
        errors,
    })
}
