//! Command-line options of `lagomorph-perf` (clap derive): the load run (the default command),
//! `sink` (the tool's own ceiling) and `connections` (open many idle connections).
//!
//! This module owns parsing and validation of flags only; it knows nothing of sockets.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `lagomorph-perf [RUN OPTIONS] | sink ... | connections ...`
#[derive(Parser, Debug, Clone)]
#[command(
    name = "lagomorph-perf",
    version,
    about = "AMQP 0-9-1 load generator: throughput, latency and message-loss checks",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// A helper mode instead of a load run.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// The load run's options.
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// For amqps:// URIs: PEM file of the CA(s) that signed the broker's certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// For amqps:// URIs: accept any broker certificate (benchmarks only).
    #[arg(long, global = true)]
    pub(crate) tls_insecure: bool,
}

/// Helper modes.
#[derive(Subcommand, Debug, Clone)]
pub(crate) enum Command {
    /// Accept AMQP connections and discard everything, answering what a producer needs
    /// (open-ok, declare-ok, select-ok, confirms): measures this tool's own ceiling.
    Sink(SinkArgs),
    /// Open many connections with one channel each, hold them, then close them.
    Connections(ConnectionsArgs),
    /// Fill a delayed-message exchange, then measure release lateness (and the broker's RSS).
    Delayed(DelayedArgs),
    /// RPC round trips over direct reply-to with concurrent callers.
    Rpc(RpcArgs),
}

/// Options of `rpc`.
#[derive(Args, Debug, Clone)]
pub(crate) struct RpcArgs {
    /// Broker URI, as for a load run.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub(crate) uri: String,
    /// Concurrent callers (one connection each, one request outstanding each).
    #[arg(short = 'c', long, default_value_t = 10)]
    pub(crate) callers: u32,
    /// Server connections answering requests.
    #[arg(long, default_value_t = 2)]
    pub(crate) servers: u32,
    /// Seconds to run.
    #[arg(short = 'z', long, default_value_t = 10.0)]
    pub(crate) time: f64,
    /// Request and reply body bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    pub(crate) size: usize,
}

/// Options of `delayed`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DelayedArgs {
    /// Broker URI, as for a load run.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub(crate) uri: String,
    /// Delayed messages to publish.
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    pub(crate) count: u64,
    /// Shortest delay, ms (longer than the fill takes, so release starts after it).
    #[arg(long, default_value_t = 30_000)]
    pub(crate) min_delay: u64,
    /// Delays spread uniformly over this many ms above --min-delay.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) spread: u64,
    /// Body bytes (at least 8: the due time).
    #[arg(short = 's', long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Durable exchange and queue.
    #[arg(long)]
    pub(crate) durable: bool,
    /// Persistent messages (delivery-mode 2).
    #[arg(long)]
    pub(crate) persistent: bool,
    /// The broker's process id, to sample its RSS.
    #[arg(long)]
    pub(crate) pid: Option<u32>,
}

/// Exchange types the tool can set up.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeType {
    /// Routing key equals binding key.
    Direct,
    /// Every bound queue gets every message.
    Fanout,
    /// Dotted patterns with `*` and `#`.
    Topic,
}

impl ExchangeType {
    /// The AMQP name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        }
    }
}

/// Options of a load run.
#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    /// Broker URI: amqp://user:pass@host:port/vhost (vhost percent-encoded, %2f is "/").
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub(crate) uri: String,
    /// Producer connections (one channel each).
    #[arg(short = 'x', long, default_value_t = 1)]
    pub(crate) producers: u32,
    /// Consumer connections (one channel each); consumer i reads queue i mod --queues.
    #[arg(short = 'y', long, default_value_t = 1)]
    pub(crate) consumers: u32,
    /// Queues to declare; producer i publishes to queue i mod --queues (all of them with fanout).
    #[arg(short = 'Q', long, default_value_t = 1)]
    pub(crate) queues: u32,
    /// Queue name prefix; queues are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "lagomorph-perf")]
    pub(crate) queue_prefix: String,
    /// Exchange to publish to; empty is the default exchange (direct to the queue by name).
    /// With --exchange-type fanout or topic and no name, "lagomorph-perf.TYPE" is used.
    #[arg(short = 'e', long, default_value = "")]
    pub(crate) exchange: String,
    /// Exchange type to declare.
    #[arg(short = 't', long, value_enum, default_value_t = ExchangeType::Direct)]
    pub(crate) exchange_type: ExchangeType,
    /// Binding keys per queue (direct and topic). Producers rotate over their queue's keys,
    /// so each message matches exactly one binding. Topic keys are "QUEUE.N.*".
    #[arg(long, default_value_t = 1)]
    pub(crate) bindings: u32,
    /// Message body size in bytes (at least 16: producer id, sequence, send time).
    #[arg(short = 's', long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Publish rate limit per producer in messages per second; 0 = as fast as possible.
    #[arg(short = 'r', long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Publisher confirms with at most this many unconfirmed messages per producer.
    #[arg(short = 'c', long, value_name = "WINDOW")]
    pub(crate) confirm: Option<u32>,
    /// Persistent messages (delivery-mode 2) to durable queues.
    #[arg(short = 'f', long)]
    pub(crate) persistent: bool,
    /// Give every message a random priority from 0 to N (uniform).
    #[arg(long, value_name = "N")]
    pub(crate) priority_random: Option<u8>,
    /// basic.qos prefetch count per consumer; 0 = unlimited.
    #[arg(short = 'q', long, default_value_t = 0)]
    pub(crate) prefetch: u16,
    /// Consume with no-ack (automatic acknowledgement).
    #[arg(short = 'a', long)]
    pub(crate) auto_ack: bool,
    /// Manual acks: one basic.ack with multiple=true every N deliveries (1 = ack each one).
    #[arg(short = 'A', long, default_value_t = 1, value_name = "N")]
    pub(crate) multi_ack: u32,
    /// Run time in seconds (producers stop then; consumers then drain what was sent).
    /// Default 10 s unless --pmessages, --cmessages or --backlog bounds the run.
    #[arg(short = 'z', long, value_name = "SECONDS")]
    pub(crate) time: Option<f64>,
    /// Messages each producer publishes.
    #[arg(short = 'C', long)]
    pub(crate) pmessages: Option<u64>,
    /// Messages each consumer receives before it stops.
    #[arg(short = 'D', long)]
    pub(crate) cmessages: Option<u64>,
    /// Backlog run: producers first publish this many messages in total with no consumer
    /// attached, then the consumers drain them; fill and drain rates are reported apart.
    #[arg(long, value_name = "MESSAGES")]
    pub(crate) backlog: Option<u64>,
    /// After the producers stop, how long consumers may take to receive what is left.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub(crate) drain_timeout: f64,
    /// Print the final summary as one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// No live rates on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Keep the queues after the run (default: delete them).
    #[arg(long)]
    pub(crate) keep_queues: bool,
    /// A queue argument on every queue.declare, as KEY=VALUE; repeat for several. An integer
    /// value is sent as a signed 64-bit number, `true`/`false` as a boolean, anything else as
    /// a string, e.g. `--queue-arg x-message-ttl=60000 --queue-arg x-dead-letter-exchange=`.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE", value_parser = parse_queue_arg)]
    pub(crate) queue_args: Vec<(String, String)>,
}

/// `KEY=VALUE` of `--queue-arg`.
fn parse_queue_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Options of `sink`.
#[derive(Args, Debug, Clone)]
pub(crate) struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5699")]
    pub(crate) listen: SocketAddr,
    /// Stop after this many seconds (0 = run until killed).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub(crate) time: f64,
    /// Forward every publish to a consumer as a delivery instead of discarding it (consumers
    /// get nothing else): latency through it is the floor under any broker.
    #[arg(long)]
    pub(crate) relay: bool,
}

/// Options of `connections`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnectionsArgs {
    /// Broker URI, as for a load run.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub(crate) uri: String,
    /// How many connections to open (one channel each).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub(crate) count: u32,
    /// How many handshakes may be in progress at once.
    #[arg(long, default_value_t = 50)]
    pub(crate) parallel: u32,
    /// How long to hold the connections open before closing them.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub(crate) hold: f64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl RunArgs {
    /// Checks combinations clap cannot; the message names the flag at fault.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.size < 16 {
            return Err(format!("--size {} is below the 16-byte minimum", self.size));
        }
        if self.queues == 0 {
            return Err("--queues must be at least 1".into());
        }
        if self.bindings == 0 {
            return Err("--bindings must be at least 1".into());
        }
        if self.multi_ack == 0 {
            return Err("--multi-ack must be at least 1".into());
        }
        if !self.auto_ack && self.prefetch > 0 && self.multi_ack > u32::from(self.prefetch) {
            return Err(format!(
                "--multi-ack {} exceeds --prefetch {}: the consumer would stall",
                self.multi_ack, self.prefetch
            ));
        }
        if self.confirm == Some(0) {
            return Err("--confirm window must be at least 1".into());
        }
        if let Some(t) = self.time
            && !(t.is_finite() && t > 0.0)
        {
            return Err("--time must be a positive number of seconds".into());
        }
        if !(self.drain_timeout.is_finite() && self.drain_timeout >= 0.0) {
            return Err("--drain-timeout must be a non-negative number of seconds".into());
        }
        if self.backlog.is_some() && self.producers == 0 {
            return Err("--backlog needs at least one producer".into());
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: no producers and no consumers".into());
        }
        if self.producers == 0 && self.cmessages.is_none() && self.time.is_none() {
            return Err("consumers alone need --cmessages or --time".into());
        }
        Ok(())
    }

    /// The run time limit: --time, else 10 s unless a message count bounds the run.
    pub(crate) fn time_limit(&self) -> Option<Duration> {
        match self.time {
            Some(t) => Some(Duration::from_secs_f64(t)),
            None if self.pmessages.is_some()
                || self.cmessages.is_some()
                || self.backlog.is_some() =>
            {
                None
            }
            None => Some(Duration::from_secs(10)),
        }
    }

    /// The exchange name actually used.
    pub(crate) fn exchange_name(&self) -> String {
        if self.exchange.is_empty() && self.exchange_type != ExchangeType::Direct {
            format!("lagomorph-perf.{}", self.exchange_type.as_str())
        } else {
            self.exchange.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("lagomorph-perf").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn defaults_are_a_ten_second_one_to_one_run() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        cli.run.validate().expect("valid");
        assert_eq!(cli.run.time_limit(), Some(Duration::from_secs(10)));
        assert_eq!(cli.run.exchange_name(), "");
    }

    #[test]
    fn message_counts_replace_the_default_time() {
        let cli = parse(&["--pmessages", "5"]);
        assert_eq!(cli.run.time_limit(), None);
    }

    #[test]
    fn bad_combinations_name_the_flag() {
        let cli = parse(&["--size", "8"]);
        assert!(cli.run.validate().unwrap_err().contains("--size"));
        let cli = parse(&["--prefetch", "10", "--multi-ack", "20"]);
        assert!(cli.run.validate().unwrap_err().contains("--multi-ack"));
        let cli = parse(&["--confirm", "0"]);
        assert!(cli.run.validate().unwrap_err().contains("--confirm"));
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["sink", "--listen", "127.0.0.1:1"]);
        assert!(matches!(cli.command, Some(Command::Sink(_))));
        let cli = parse(&["connections", "-n", "3"]);
        assert!(matches!(cli.command, Some(Command::Connections(ref c)) if c.count == 3));
    }

    #[test]
    fn fanout_gets_a_default_exchange_name() {
        let cli = parse(&["-t", "fanout"]);
        assert_eq!(cli.run.exchange_name(), "lagomorph-perf.fanout");
    }
}
