//! `eddy stats`: per-policy and per-rule traffic counters from `Statistics.List` (SPEC §8).

use clap::{Args, ValueEnum};

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::filter::{parse_policy, ActionArg};
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::render::endpoint;
use crate::cli::table::{bytes, count, Align, Cell, Style, Table};
use crate::cli::time::RangeArgs;
use crate::proto::statistics_client::StatisticsClient;
use crate::proto::{
    Action, PolicyKind, PolicyMatch, RuleDirection, StatisticType, StatisticsGroupBy,
    StatisticsRequest, StatisticsResult,
};

/// What `eddy stats` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatArg {
    /// Packets.
    Packets,
    /// Bytes.
    Bytes,
    /// Live connections.
    Connections,
}

/// How `eddy stats` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GroupArg {
    /// One row per policy.
    Policy,
    /// One row per policy rule and direction.
    Rule,
}

/// `eddy stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The time range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// What to count.
    #[arg(long = "type", value_enum, default_value = "packets")]
    pub statistic: StatArg,
    /// One row per policy or per rule.
    #[arg(long, value_enum, default_value = "policy")]
    pub group_by: GroupArg,
    /// Only this policy: `tier/name`, `tier/namespace/name`, `kind:tier/name` or `key=value` pairs.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Option<PolicyMatch>,
    /// Only hits with this action.
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// One value per bucket instead of one total (shown as totals in tables).
    #[arg(long)]
    pub time_series: bool,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

const COUNTER_COLUMNS: [(&str, Align); 6] = [
    ("ALLOWED IN", Align::Right),
    ("ALLOWED OUT", Align::Right),
    ("DENIED IN", Align::Right),
    ("DENIED OUT", Align::Right),
    ("PASSED IN", Align::Right),
    ("PASSED OUT", Align::Right),
];

fn columns(rules: bool, wide: bool) -> Vec<(&'static str, Align)> {
    let mut columns = vec![
        ("KIND", Align::Left),
        ("TIER", Align::Left),
        ("POLICY", Align::Left),
    ];
    if rules {
        columns.extend([
            ("ACTION", Align::Left),
            ("RULE", Align::Right),
            ("DIRECTION", Align::Left),
        ]);
    }
    columns.extend(COUNTER_COLUMNS);
    if wide {
        columns.push(("POINTS", Align::Right));
    }
    columns
}

fn row(result: &StatisticsResult, rules: bool, wide: bool) -> Vec<Cell> {
    let policy = result.policy.clone().unwrap_or_default();
    let kind = PolicyKind::try_from(policy.kind)
        .map_or_else(|_| format!("#{}", policy.kind), |k| k.as_str_name().into());
    let mut cells: Vec<Cell> = vec![
        kind.into(),
        policy.tier.clone().into(),
        endpoint(&policy.namespace, &policy.name).into(),
    ];
    if rules {
        let action = Action::try_from(policy.action).map_or_else(
            |_| format!("#{}", policy.action),
            |a| a.as_str_name().to_lowercase(),
        );
        let direction = RuleDirection::try_from(result.direction).map_or_else(
            |_| format!("#{}", result.direction),
            |d| d.as_str_name().to_lowercase(),
        );
        cells.extend([
            action.into(),
            policy.rule_index.to_string().into(),
            direction.into(),
        ]);
    }
    let unit = if result.r#type == StatisticType::ByteCount as i32 {
        bytes
    } else {
        count
    };
    let series = [
        (&result.allowed_in, Style::Green),
        (&result.allowed_out, Style::Green),
        (&result.denied_in, Style::Red),
        (&result.denied_out, Style::Red),
        (&result.passed_in, Style::Yellow),
        (&result.passed_out, Style::Yellow),
    ];
    for (values, style) in series {
        let total: i64 = values.iter().sum();
        cells.push(if total == 0 {
            Cell::styled("0", Style::Dim)
        } else {
            Cell::styled(unit(total), style)
        });
    }
    if wide {
        cells.push(result.x.len().max(1).to_string().into());
    }
    cells
}

/// Runs `eddy stats`.
pub async fn run(args: StatsArgs) -> Result<(), CliError> {
    let channel = args.server.connect().await?;
    let mut policy_match = args.policy.clone().unwrap_or_default();
    if let Some(action) = args.action {
        policy_match.action = Action::from(action) as i32;
    }
    let request = StatisticsRequest {
        start_time_gte: args.range.gte(),
        start_time_lt: args.range.lt(),
        r#type: match args.statistic {
            StatArg::Packets => StatisticType::PacketCount,
            StatArg::Bytes => StatisticType::ByteCount,
            StatArg::Connections => StatisticType::LiveConnectionCount,
        } as i32,
        group_by: match args.group_by {
            GroupArg::Policy => StatisticsGroupBy::Policy,
            GroupArg::Rule => StatisticsGroupBy::PolicyRule,
        } as i32,
        policy_match: (policy_match != PolicyMatch::default()).then_some(policy_match),
        time_series: args.time_series,
    };
    let failed = args.server.refused("Statistics.List");
    let mut stream = StatisticsClient::new(channel)
        .max_decoding_message_size(crate::cli::flows::MAX_RESPONSE)
        .list(request)
        .await
        .map_err(failed)?
        .into_inner();
    let mut out = Output::new(&args.output);
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.map_err(failed)? {
        if out.format == Format::Ndjson {
            out.json_line(&result)?;
        } else {
            results.push(result);
        }
    }
    match out.format {
        Format::Ndjson => {}
        Format::Json => out.json_array(&results)?,
        Format::Table | Format::Wide => {
            let rules = args.group_by == GroupArg::Rule;
            let wide = out.format == Format::Wide;
            let mut table = Table::new(columns(rules, wide));
            for result in &results {
                table.push(row(result, rules, wide));
            }
            if table.is_empty() {
                out.write("no policy statistics in this range\n")?;
            } else {
                let text = table.render(out.color);
                out.write(&text)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
