//! The size bounds of one `FlowUpdate` (SPEC §12.1): strings, labels, trace lists and trigger
//! depth. An update beyond any of them is skipped as `too_large`.

use crate::proto::{Flow, FlowKey, PolicyHit};

/// How large an update may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// Bytes in one string field (names, namespaces, protocol, policy fields).
    pub field_bytes: usize,
    /// Labels on one side (source or destination).
    pub labels: usize,
    /// Bytes in one label.
    pub label_bytes: usize,
    /// Hits in one trace list (enforced or pending).
    pub trace_hits: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            field_bytes: 4096,
            labels: 256,
            label_bytes: 4096,
            trace_hits: 256,
        }
    }
}

impl InputLimits {
    /// Whether `flow` is within every bound. A trigger that has a trigger of its own is
    /// always beyond them.
    pub fn admits(&self, flow: &Flow) -> bool {
        let labels_fit = |labels: &[String]| {
            labels.len() <= self.labels && labels.iter().all(|l| l.len() <= self.label_bytes)
        };
        labels_fit(&flow.source_labels)
            && labels_fit(&flow.dest_labels)
            && flow.key.as_ref().is_none_or(|key| self.key_fits(key))
    }

    fn key_fits(&self, key: &FlowKey) -> bool {
        let strings = [
            &key.source_name,
            &key.source_namespace,
            &key.dest_name,
            &key.dest_namespace,
            &key.dest_service_name,
            &key.dest_service_namespace,
            &key.dest_service_port_name,
            &key.proto,
        ];
        strings.iter().all(|s| s.len() <= self.field_bytes)
            && key.policies.as_ref().is_none_or(|trace| {
                [&trace.enforced_policies, &trace.pending_policies]
                    .iter()
                    .all(|hits| {
                        hits.len() <= self.trace_hits && hits.iter().all(|hit| self.hit_fits(hit))
                    })
            })
    }

    fn hit_fits(&self, hit: &PolicyHit) -> bool {
        let fields_fit = |hit: &PolicyHit| {
            [&hit.namespace, &hit.name, &hit.tier]
                .iter()
                .all(|s| s.len() <= self.field_bytes)
        };
        fields_fit(hit)
            && hit
                .trigger
                .as_deref()
                .is_none_or(|trigger| trigger.trigger.is_none() && fields_fit(trigger))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let limits = InputLimits {
            field_bytes: 3,
            labels: 2,
            label_bytes: 3,
            trace_hits: 1,
        };
        let mut flow = Flow {
            key: Some(FlowKey {
                dest_name: "abc".into(),
                ..Default::default()
            }),
            source_labels: vec!["a=b".into(), "c=d".into()],
            ..Default::default()
        };
        assert!(limits.admits(&flow));
        flow.source_labels.push("e=f".into());
        assert!(!limits.admits(&flow));
        flow.source_labels.clear();
        flow.key.as_mut().expect("set above").dest_name = "abcd".into();
        assert!(!limits.admits(&flow));
    }
}
