//! Filter flags (SPEC §5): one flag per `Filter` field, repeatable where the field is repeated.
//! String fields have an exact form (`--dest-namespace prod`) and a fuzzy, case-insensitive
//! substring form (`--dest-namespace-like pro`, also spelled `--dest-namespace~ pro`, which
//! zsh's extended glob needs quoted). `--policy` takes `tier/name`, `tier/namespace/name`, an
//! optional `kind:` prefix, or `key=value` pairs.
//!
//! Hubble's spellings answer where they mean the same filter: `--from-namespace`,
//! `--to-namespace`, `--verdict FORWARDED|DROPPED` (allow, deny) and `--port`/`--to-port`
//! (flows carry only a destination port). Hubble's `--from-pod`/`--to-pod` are not offered: they
//! match one pod, and a flow's names here are aggregated workload names.

use clap::{Args, ValueEnum};

use crate::proto::{
    Action, Filter, MatchType, PolicyKind, PolicyMatch, PortMatch, Reporter, StringMatch,
};

/// A flow's or a policy hit's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Allowed (Hubble's FORWARDED).
    #[value(alias = "forwarded")]
    Allow,
    /// Denied (Hubble's DROPPED).
    #[value(alias = "dropped")]
    Deny,
    /// Passed to the next tier.
    Pass,
}

impl From<ActionArg> for Action {
    fn from(action: ActionArg) -> Self {
        match action {
            ActionArg::Allow => Action::Allow,
            ActionArg::Deny => Action::Deny,
            ActionArg::Pass => Action::Pass,
        }
    }
}

/// Which end of the connection reported the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReporterArg {
    /// The source's node.
    #[value(alias = "source")]
    Src,
    /// The destination's node.
    #[value(alias = "destination", alias = "dest")]
    Dst,
}

/// Flags that select flows.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Filters (AND across flags, OR within a repeated flag)")]
pub struct FilterArgs {
    /// Source name is exactly NAME (`pub`/`pvt` also answer to PUBLIC/PRIVATE NETWORK).
    #[arg(long = "source-name", value_name = "NAME")]
    pub source_name: Vec<String>,
    /// Source name contains TEXT, ignoring case.
    #[arg(
        long = "source-name-like",
        visible_alias = "source-name~",
        value_name = "TEXT"
    )]
    pub source_name_like: Vec<String>,
    /// Source namespace is exactly NS.
    #[arg(
        long = "source-namespace",
        visible_alias = "from-namespace",
        value_name = "NS"
    )]
    pub source_namespace: Vec<String>,
    /// Source namespace contains TEXT, ignoring case.
    #[arg(
        long = "source-namespace-like",
        visible_alias = "source-namespace~",
        value_name = "TEXT"
    )]
    pub source_namespace_like: Vec<String>,
    /// Destination name is exactly NAME.
    #[arg(long = "dest-name", value_name = "NAME")]
    pub dest_name: Vec<String>,
    /// Destination name contains TEXT, ignoring case.
    #[arg(
        long = "dest-name-like",
        visible_alias = "dest-name~",
        value_name = "TEXT"
    )]
    pub dest_name_like: Vec<String>,
    /// Destination namespace is exactly NS.
    #[arg(
        long = "dest-namespace",
        visible_alias = "to-namespace",
        value_name = "NS"
    )]
    pub dest_namespace: Vec<String>,
    /// Destination namespace contains TEXT, ignoring case.
    #[arg(
        long = "dest-namespace-like",
        visible_alias = "dest-namespace~",
        value_name = "TEXT"
    )]
    pub dest_namespace_like: Vec<String>,
    /// Protocol is exactly PROTO, e.g. TCP.
    #[arg(long = "protocol", value_name = "PROTO")]
    pub protocol: Vec<String>,
    /// Protocol contains TEXT, ignoring case.
    #[arg(
        long = "protocol-like",
        visible_alias = "protocol~",
        value_name = "TEXT"
    )]
    pub protocol_like: Vec<String>,
    /// Destination port.
    #[arg(long = "dest-port", visible_aliases = ["port", "to-port"], value_name = "PORT", value_parser = clap::value_parser!(i64).range(0..=65535))]
    pub dest_port: Vec<i64>,
    /// The flow's final action (Hubble's FORWARDED and DROPPED are allow and deny).
    #[arg(long, visible_alias = "verdict", value_enum, ignore_case = true)]
    pub action: Vec<ActionArg>,
    /// Some staged (pending) policy hit has this action.
    #[arg(long = "pending-action", value_enum, ignore_case = true)]
    pub pending_action: Vec<ActionArg>,
    /// A policy the flow hit: `tier/name`, `tier/namespace/name`, `kind:tier/name`, or
    /// `kind=..,tier=..,namespace=..,name=..,action=..`; empty or `*` parts match anything.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Vec<PolicyMatch>,
    /// Which end reported the flow.
    #[arg(long, value_enum)]
    pub reporter: Option<ReporterArg>,
}

fn strings(exact: &[String], fuzzy: &[String]) -> Vec<StringMatch> {
    let exact = exact.iter().map(|value| StringMatch {
        value: value.clone(),
        r#type: MatchType::Exact as i32,
    });
    let fuzzy = fuzzy.iter().map(|value| StringMatch {
        value: value.clone(),
        r#type: MatchType::Fuzzy as i32,
    });
    exact.chain(fuzzy).collect()
}

fn actions(actions: &[ActionArg]) -> Vec<i32> {
    actions.iter().map(|&a| Action::from(a) as i32).collect()
}

impl FilterArgs {
    /// The request filter; `None` when no flag was given.
    pub fn to_proto(&self) -> Option<Filter> {
        let filter = Filter {
            source_names: strings(&self.source_name, &self.source_name_like),
            source_namespaces: strings(&self.source_namespace, &self.source_namespace_like),
            dest_names: strings(&self.dest_name, &self.dest_name_like),
            dest_namespaces: strings(&self.dest_namespace, &self.dest_namespace_like),
            protocols: strings(&self.protocol, &self.protocol_like),
            dest_ports: self
                .dest_port
                .iter()
                .map(|&port| PortMatch { port })
                .collect(),
            actions: actions(&self.action),
            policies: self.policy.clone(),
            reporter: match self.reporter {
                None => Reporter::Unspecified as i32,
                Some(ReporterArg::Src) => Reporter::Src as i32,
                Some(ReporterArg::Dst) => Reporter::Dst as i32,
            },
            pending_actions: actions(&self.pending_action),
        };
        (filter != Filter::default()).then_some(filter)
    }
}

/// A policy kind by its proto name or a short alias (`gnp`, `knp`, `eot`, ...), ignoring case.
pub fn parse_kind(text: &str) -> Option<PolicyKind> {
    let lower = text.to_ascii_lowercase().replace(['-', '_'], "");
    let kind = match lower.as_str() {
        "caliconetworkpolicy" | "cnp" | "calico" => PolicyKind::CalicoNetworkPolicy,
        "globalnetworkpolicy" | "gnp" | "global" => PolicyKind::GlobalNetworkPolicy,
        "stagednetworkpolicy" | "snp" | "staged" => PolicyKind::StagedNetworkPolicy,
        "stagedglobalnetworkpolicy" | "sgnp" => PolicyKind::StagedGlobalNetworkPolicy,
        "stagedkubernetesnetworkpolicy" | "sknp" => PolicyKind::StagedKubernetesNetworkPolicy,
        "networkpolicy" | "knp" | "k8s" | "kubernetes" => PolicyKind::NetworkPolicy,
        "clusternetworkpolicy" | "cluster" => PolicyKind::ClusterNetworkPolicy,
        "profile" => PolicyKind::Profile,
        "endoftier" | "eot" => PolicyKind::EndOfTier,
        _ => return None,
    };
    Some(kind)
}

fn wildcard(part: &str) -> String {
    if part == "*" {
        String::new()
    } else {
        part.to_string()
    }
}

const POLICY_FORMS: &str =
    "use tier/name, tier/namespace/name, kind:tier/name or kind=..,tier=..,namespace=..,name=..,action=..";

/// Parses a `--policy` value into a `PolicyMatch`.
pub fn parse_policy(text: &str) -> Result<PolicyMatch, String> {
    let mut wanted = PolicyMatch::default();
    let kind = |value: &str| {
        parse_kind(value).map(|k| k as i32).ok_or_else(|| {
            format!("unknown policy kind `{value}` (e.g. GlobalNetworkPolicy, gnp, NetworkPolicy, knp, EndOfTier)")
        })
    };
    if text.contains('=') {
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value; {POLICY_FORMS}"))?;
            let value = value.trim();
            match key.trim() {
                "kind" => wanted.kind = kind(value)?,
                "tier" => wanted.tier = wildcard(value),
                "namespace" | "ns" => wanted.namespace = wildcard(value),
                "name" => wanted.name = wildcard(value),
                "action" => {
                    let action = ActionArg::from_str(value, true)
                        .map_err(|_| format!("unknown action `{value}` (allow, deny or pass)"))?;
                    wanted.action = Action::from(action) as i32;
                }
                other => return Err(format!("unknown policy field `{other}`; {POLICY_FORMS}")),
            }
        }
        return Ok(wanted);
    }
    let path = match text.split_once(':') {
        Some((prefix, path)) => {
            wanted.kind = kind(prefix)?;
            path
        }
        None => text,
    };
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [tier, name] => {
            wanted.tier = wildcard(tier);
            wanted.name = wildcard(name);
        }
        [tier, namespace, name] => {
            wanted.tier = wildcard(tier);
            wanted.namespace = wildcard(namespace);
            wanted.name = wildcard(name);
        }
        _ => return Err(format!("`{text}` is not a policy; {POLICY_FORMS}")),
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_paths_and_pairs_parse() {
        let tier_name = parse_policy("default/allow-web").expect("valid");
        assert_eq!(
            (tier_name.tier.as_str(), tier_name.name.as_str()),
            ("default", "allow-web")
        );
        let full = parse_policy("knp:default/prod/allow-web").expect("valid");
        assert_eq!(full.kind, PolicyKind::NetworkPolicy as i32);
        assert_eq!(full.namespace, "prod");
        let wild = parse_policy("*/prod/*").expect("valid");
        assert_eq!(
            (
                wild.tier.as_str(),
                wild.namespace.as_str(),
                wild.name.as_str()
            ),
            ("", "prod", "")
        );
        let pairs = parse_policy("kind=EndOfTier,tier=default,action=deny").expect("valid");
        assert_eq!(pairs.kind, PolicyKind::EndOfTier as i32);
        assert_eq!(pairs.action, Action::Deny as i32);
        assert!(parse_policy("a/b/c/d").is_err());
        assert!(parse_policy("just-a-name").is_err());
        assert!(parse_policy("bogus:default/x").is_err());
        assert!(parse_policy("colour=red").is_err());
        assert!(parse_policy("action=maybe").is_err());
    }

    /// The filter `flags` parse to.
    fn parsed(flags: &[&str]) -> Option<Filter> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            filter: FilterArgs,
        }
        let args = std::iter::once("eddy").chain(flags.iter().copied());
        <Flags as clap::Parser>::try_parse_from(args)
            .expect("valid flags")
            .filter
            .to_proto()
    }

    #[test]
    fn other_spellings_make_the_same_filter() {
        let pairs: &[(&[&str], &[&str])] = &[
            (&["--dest-name-like", "db"], &["--dest-name~", "db"]),
            (&["--source-name-like", "w"], &["--source-name~", "w"]),
            (
                &["--source-namespace-like", "a"],
                &["--source-namespace~", "a"],
            ),
            (&["--dest-namespace-like", "b"], &["--dest-namespace~", "b"]),
            (&["--protocol-like", "tc"], &["--protocol~", "tc"]),
            (
                &["--from-namespace", "shop"],
                &["--source-namespace", "shop"],
            ),
            (&["--to-namespace", "shop"], &["--dest-namespace", "shop"]),
            (&["--verdict", "FORWARDED"], &["--action", "allow"]),
            (&["--verdict", "dropped"], &["--action", "deny"]),
            (&["--verdict", "Pass"], &["--action", "pass"]),
            (
                &["--port", "53", "--to-port", "80"],
                &["--dest-port", "53", "--dest-port", "80"],
            ),
        ];
        for (alias, canonical) in pairs {
            let filter = parsed(alias);
            assert!(filter.is_some(), "{alias:?} filters");
            assert_eq!(filter, parsed(canonical), "{alias:?} = {canonical:?}");
        }
        let fuzzy = parsed(&["--dest-name-like", "db"]).expect("a filter");
        assert_eq!(fuzzy.dest_names[0].r#type, MatchType::Fuzzy as i32);
        let deny = parsed(&["--verdict", "DROPPED"]).expect("a filter");
        assert_eq!(deny.actions, vec![Action::Deny as i32]);
    }

    #[test]
    fn no_flags_means_no_filter_and_fuzzy_values_follow_exact_ones() {
        assert_eq!(FilterArgs::default().to_proto(), None);
        let args = FilterArgs {
            dest_namespace: vec!["prod".into()],
            dest_namespace_like: vec!["pro".into()],
            reporter: Some(ReporterArg::Dst),
            ..FilterArgs::default()
        };
        let filter = args.to_proto().expect("a filter");
        assert_eq!(filter.dest_namespaces.len(), 2);
        assert_eq!(filter.dest_namespaces[1].r#type, MatchType::Fuzzy as i32);
        assert_eq!(filter.reporter, Reporter::Dst as i32);
    }
}
