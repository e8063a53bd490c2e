//! [`PullingFamily`]: a Prometheus collector for one metric family whose samples are read
//! from a part's own counters at scrape time, so values are never copied into a second set
//! of atomics. It generalises the client crate's `PullingGauge` to counters and to one
//! label; the crate's text encoder escapes the label values.

use std::collections::HashMap;
use std::fmt;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// Whether a family only grows or may go up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic: only grows while the process lives.
    Counter,
    /// A level that may go up and down.
    Gauge,
}

/// One sample: the value of the family's label (unused by unlabelled families) and the value.
pub type Sample = (String, f64);

type Read = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// A metric family read at scrape time by a closure over a part's counters.
pub struct PullingFamily {
    desc: Desc,
    kind: Kind,
    read: Read,
}

impl fmt::Debug for PullingFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullingFamily")
            .field("name", &self.desc.fq_name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl PullingFamily {
    /// A family with one unlabelled sample, `read` at every scrape.
    pub fn single(
        kind: Kind,
        name: &str,
        help: &str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::build(kind, name, help, None, move || {
            vec![(String::new(), read())]
        })
    }

    /// A family with one sample per value of `label`, `read` at every scrape. A family that
    /// reads no sample is left out of the scrape.
    pub fn labelled(
        kind: Kind,
        name: &str,
        help: &str,
        label: &str,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::build(kind, name, help, Some(label), read)
    }

    /// A family whose unlabelled sample is present only while `read` returns a value.
    pub fn optional(
        kind: Kind,
        name: &str,
        help: &str,
        read: impl Fn() -> Option<f64> + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::build(kind, name, help, None, move || {
            read()
                .map(|value| (String::new(), value))
                .into_iter()
                .collect()
        })
    }

    fn build(
        kind: Kind,
        name: &str,
        help: &str,
        label: Option<&str>,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        let labels = label.into_iter().map(str::to_string).collect();
        Ok(PullingFamily {
            desc: Desc::new(name.to_string(), help.to_string(), labels, HashMap::new())?,
            kind,
            read: Box::new(read),
        })
    }

    fn metric(&self, label_value: String, value: f64) -> Metric {
        let mut metric = Metric::default();
        if let Some(label) = self.desc.variable_labels.first() {
            let mut pair = LabelPair::default();
            pair.set_name(label.clone());
            pair.set_value(label_value);
            metric.set_label(vec![pair]);
        }
        match self.kind {
            Kind::Counter => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            Kind::Gauge => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        metric
    }
}

impl Collector for PullingFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(match self.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
        });
        let metrics = (self.read)()
            .into_iter()
            .map(|(label_value, value)| self.metric(label_value, value))
            .collect();
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use prometheus::{Registry, TextEncoder};

    use super::*;

    fn encode(registry: &Registry) -> String {
        TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("gathered families encode")
    }

    #[test]
    fn samples_are_read_from_the_source_at_each_scrape() {
        let source = Arc::new(AtomicU64::new(3));
        let read = source.clone();
        let registry = Registry::new();
        registry
            .register(Box::new(
                PullingFamily::single(Kind::Counter, "x_total", "Things.", move || {
                    read.load(Ordering::Relaxed) as f64
                })
                .expect("a valid family"),
            ))
            .expect("registered once");
        assert_eq!(
            encode(&registry),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
        );
        source.store(5, Ordering::Relaxed);
        assert!(encode(&registry).ends_with("\nx_total 5\n"));
    }

    #[test]
    fn label_values_are_escaped_by_the_encoder() {
        let registry = Registry::new();
        let family = PullingFamily::labelled(Kind::Gauge, "rows", "Rows.", "view", || {
            vec![
                ("plain".to_string(), 1.0),
                ("say \"hi\"\\now\nthen".to_string(), 2.0),
            ]
        })
        .expect("a valid family");
        registry
            .register(Box::new(family))
            .expect("registered once");
        let text = encode(&registry);
        assert!(text.contains("\nrows{view=\"plain\"} 1\n"), "{text}");
        assert!(
            text.contains("\nrows{view=\"say \\\"hi\\\"\\\\now\\nthen\"} 2\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "no raw newline leaks: {text}");
    }

    #[test]
    fn an_optional_family_without_a_value_is_left_out() {
        let registry = Registry::new();
        let family = PullingFamily::optional(Kind::Gauge, "maybe", "Maybe.", || None)
            .expect("a valid family");
        registry
            .register(Box::new(family))
            .expect("registered once");
        assert_eq!(encode(&registry), "");
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(PullingFamily::single(Kind::Gauge, "no spaces", "Bad.", || 0.0).is_err());
    }
}
