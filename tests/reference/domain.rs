//! The test domain: a few names, namespaces, ports, labels and policy traces, small enough
//! that keys, labels, hints and buckets collide; and the operations a case is made of.

use eddy::proto::{Filter, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, StatisticsRequest};

pub const W: i64 = 15;
pub const NAMES: [&str; 4] = ["frontend", "checkout", "pub", "pvt"];
pub const NAMESPACES: [&str; 4] = ["shop", "-", "Global", ""];
pub const PORTS: [i64; 3] = [80, 443, 8080];
pub const PROTOS: [&str; 2] = ["TCP", "UDP"];
/// Labels are opaque: a comma and the empty string are labels like any other (SPEC §3.4).
pub const LABELS: [&str; 6] = ["app=web", "app=db", "env=prod", "team=a,b", "zone=1", ""];

/// A flow key, by indices into the domain. `trace` picks one of [`trace`]'s templates.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub names: (usize, usize),
    pub namespaces: (usize, usize),
    pub types: (i32, i32),
    pub port: usize,
    pub proto: usize,
    /// Whether the destination is reached through a service.
    pub service: bool,
    pub reporter: i32,
    pub action: i32,
    pub trace: usize,
}

/// What makes an update invalid (SPEC §9.3), if anything.
#[derive(Clone, Copy, Debug)]
pub enum Defect {
    None,
    NoKey,
    EndBeforeStart,
    NegativeCounter,
}

/// One update: a key of the case's pool, reshuffled hits, a start relative to the clock.
#[derive(Clone, Debug)]
pub struct UpdateSpec {
    pub key: usize,
    pub shuffle: u64,
    pub absent_trace: bool,
    /// Bucket offset: from the oldest retained bucket (`true`) or from the current one.
    pub from_floor: bool,
    pub buckets: i64,
    pub second: i64,
    pub duration: i64,
    pub counters: [i64; 7],
    pub labels: (Vec<usize>, Vec<usize>),
    pub defect: Defect,
}

/// How far an `Advance` moves the clock.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    Seconds(i64),
    Windows(i64),
    PastRetention,
    PastDedupHorizon,
}

#[derive(Clone, Debug)]
pub enum Op {
    Ingest(Vec<UpdateSpec>),
    /// Sends a previously sent batch again, on a new connection (SPEC §9.4).
    Replay(usize),
    /// One update per key of the pool and retained bucket: enough rows to exercise the
    /// workers' top-k truncation under paging.
    Bulk(u64),
    Advance(Step),
}

/// A request time bound: 0, relative to now, or absolute (bucket offset and second).
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    Zero,
    Relative(i64),
    Absolute(i64, i64),
}

/// The filtered queries made after an operation.
#[derive(Clone, Debug)]
pub struct QuerySpec {
    pub filter: Filter,
    pub gte: Bound,
    pub lt: Bound,
    pub sort_by: Vec<i32>,
    pub intervals: i64,
    pub page: i64,
    pub page_size: i64,
    /// Type, group-by, policy match and time series; the range is the one above.
    pub statistics: StatisticsRequest,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub closed_buckets: i64,
    pub keys: Vec<KeySpec>,
    pub ops: Vec<(Op, QuerySpec)>,
}

/// A hit of `kind` at `(policy_index, rule_index)`; `what` is "tier namespace name", with
/// `.` for an empty field.
fn hit(kind: PolicyKind, what: &str, action: i32, at: (i64, i64)) -> PolicyHit {
    let field = |i: usize| {
        let value = what.split(' ').nth(i).unwrap_or(".");
        if value == "." {
            String::new()
        } else {
            value.to_string()
        }
    };
    PolicyHit {
        kind: kind as i32,
        tier: field(0),
        namespace: field(1),
        name: field(2),
        action,
        policy_index: at.0,
        rule_index: at.1,
        trigger: None,
    }
}

fn end_of_tier(tier: &str, action: i32, at: (i64, i64), trigger: Option<PolicyHit>) -> PolicyHit {
    let mut hit = hit(PolicyKind::EndOfTier, tier, action, at);
    hit.trigger = trigger.map(Box::new);
    hit
}

/// The trace templates: empty; a triggered EndOfTier and a pending hit; a Profile hit, an
/// untriggered EndOfTier and triggered pending ones; hits equal up to action or trigger.
pub fn trace(template: usize) -> PolicyTrace {
    use PolicyKind::*;
    let (allow, deny, pass) = (1, 2, 3);
    let deny_all = hit(GlobalNetworkPolicy, "security . deny-all", deny, (1, 0));
    let np_db = hit(NetworkPolicy, "default - np-db", pass, (0, 3));
    // Two Allow rules of one policy, one of them also pending (SPEC §8.2 counts each once).
    let web = hit(CalicoNetworkPolicy, "default shop allow-web", allow, (0, 1));
    let tenant_web = hit(NetworkPolicy, "tenant shop allow-web", pass, (2, 0));
    // A trigger on a hit that is not EndOfTier: FilterHints still reads it (SPEC §6.3),
    // policy filters do not (SPEC §5.5).
    let mut odd = hit(
        StagedGlobalNetworkPolicy,
        "security . staged-g",
        deny,
        (3, 0),
    );
    let hidden = hit(NetworkPolicy, "hidden Global np-hidden", deny, (3, 1));
    odd.trigger = Some(Box::new(hidden));
    let (enforced, pending) = match template % 4 {
        0 => (vec![], vec![]),
        1 => (
            vec![
                web.clone(),
                hit(CalicoNetworkPolicy, "default shop allow-web", allow, (0, 4)),
                end_of_tier("security", deny, (1, -1), Some(deny_all)),
            ],
            vec![
                web,
                hit(StagedNetworkPolicy, "default shop staged-web", deny, (0, 2)),
            ],
        ),
        2 => (
            vec![
                hit(Profile, "__PROFILE__ . kns.shop", allow, (0, 0)),
                end_of_tier("default", deny, (0, 0), None),
            ],
            vec![end_of_tier("default", pass, (0, 0), Some(np_db)), odd],
        ),
        _ => (
            vec![
                hit(GlobalNetworkPolicy, "security . allow-dns", allow, (0, 0)),
                hit(NetworkPolicy, "default Global np-db", allow, (1, 0)),
                hit(NetworkPolicy, "default Global np-db", deny, (1, 0)),
                end_of_tier("tenant", pass, (2, -1), None),
                end_of_tier("tenant", pass, (2, -1), Some(tenant_web)),
            ],
            vec![hit(
                StagedKubernetesNetworkPolicy,
                "default - np-db",
                pass,
                (1, 1),
            )],
        ),
    };
    PolicyTrace {
        enforced_policies: enforced,
        pending_policies: pending,
    }
}

/// A deterministic Fisher-Yates shuffle driven by `seed` (xorshift).
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        items.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

impl UpdateSpec {
    /// The update as a client sends it, at clock `now`.
    pub fn flow(&self, keys: &[KeySpec], closed_buckets: i64, now: i64) -> Flow {
        let spec = &keys[self.key % keys.len()];
        let mut trace = trace(spec.trace);
        let mut seed = self.shuffle | 1;
        shuffle(&mut trace.enforced_policies, &mut seed);
        shuffle(&mut trace.pending_policies, &mut seed);
        let policies = (!(self.absent_trace && trace == PolicyTrace::default())).then_some(trace);
        let service = |value: &str| {
            if spec.service {
                value.into()
            } else {
                String::new()
            }
        };
        let key = FlowKey {
            source_name: NAMES[spec.names.0].into(),
            source_namespace: NAMESPACES[spec.namespaces.0].into(),
            source_type: spec.types.0,
            dest_name: NAMES[spec.names.1].into(),
            dest_namespace: NAMESPACES[spec.namespaces.1].into(),
            dest_type: spec.types.1,
            dest_port: PORTS[spec.port],
            dest_service_name: service("checkout-svc"),
            dest_service_namespace: service("shop"),
            dest_service_port_name: service("https"),
            dest_service_port: if spec.service { 8443 } else { 0 },
            proto: PROTOS[spec.proto].into(),
            reporter: spec.reporter,
            action: spec.action,
            policies,
        };
        let current = now - now.rem_euclid(W);
        let base = if self.from_floor {
            current - closed_buckets * W
        } else {
            current
        };
        let start = base + self.buckets * W + self.second;
        let mut counters = self.counters;
        let end = match self.defect {
            Defect::EndBeforeStart => start - 1,
            _ => start + self.duration,
        };
        if let Defect::NegativeCounter = self.defect {
            counters[self.shuffle as usize % 7] = -1;
        }
        let labels = |picks: &[usize]| picks.iter().map(|i| LABELS[*i].to_string()).collect();
        Flow {
            key: (!matches!(self.defect, Defect::NoKey)).then_some(key),
            start_time: start,
            end_time: end,
            source_labels: labels(&self.labels.0),
            dest_labels: labels(&self.labels.1),
            packets_in: counters[0],
            packets_out: counters[1],
            bytes_in: counters[2],
            bytes_out: counters[3],
            num_connections_started: counters[4],
            num_connections_completed: counters[5],
            num_connections_live: counters[6],
        }
    }
}

/// The updates of [`Op::Bulk`]: every key, every bucket from the oldest to the future one.
pub fn bulk(seed: u64, keys: usize, closed_buckets: i64) -> Vec<UpdateSpec> {
    let mut updates = Vec::new();
    for key in 0..keys {
        for buckets in 0..=closed_buckets + 1 {
            let mix = seed.rotate_left((key * 7) as u32 + buckets as u32);
            updates.push(UpdateSpec {
                key,
                shuffle: mix,
                absent_trace: false,
                from_floor: true,
                buckets,
                second: (mix % W as u64) as i64,
                duration: 1,
                counters: [(mix % 5) as i64, 1, 2, 3, 1, 0, (mix % 2) as i64],
                labels: (vec![(mix % 3) as usize, 4], vec![(mix % 6) as usize]),
                defect: Defect::None,
            });
        }
    }
    updates
}

impl Step {
    pub fn seconds(self, closed_buckets: i64) -> i64 {
        match self {
            Step::Seconds(s) => s,
            Step::Windows(k) => k * W,
            Step::PastRetention => (closed_buckets + 1) * W,
            Step::PastDedupHorizon => 25 * W,
        }
    }
}
