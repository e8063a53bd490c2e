//! `FILE_CONFIG_PATH`: Goldmane's switch that turns the emitter on and off without a restart.
//!
//! The file holds JSON such as `{"emitFlows": true}`. The emitter sends windows only while the
//! file says `true`; a missing, unreadable or malformed file, or one without `emitFlows`,
//! means off. As in Go, the key matches case-insensitively and other keys are ignored. The
//! file is read at start and then every [`POLL`], and only a change of its bytes is looked at
//! again (polling, because Kubernetes updates a mounted ConfigMap by swapping symlinks).
//! While the switch is off, due windows wait and progress stays where it is; once it is on
//! again, the waiting windows still inside retention are sent in order.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

/// How often the file is read, as Goldmane does.
pub const POLL: Duration = Duration::from_secs(30);

/// The key that turns the emitter on.
const KEY: &str = "emitFlows";

/// Where the switch file is and how often it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSwitch {
    /// The JSON file.
    pub path: PathBuf,
    /// The interval between reads.
    pub poll: Duration,
}

/// What one read of the file found: its bytes, or why there are none.
type Snapshot = Result<Vec<u8>, ErrorKind>;

/// `emitFlows` of the file's contents: `Ok(false)` when absent or null, an error when the
/// contents are not a JSON object or the value is not a boolean.
pub fn emit_flows(contents: &[u8]) -> Result<bool, String> {
    let object = match serde_json::from_slice::<Value>(contents) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err("the file is not a JSON object".to_string()),
        Err(error) => return Err(format!("the file is not JSON: {error}")),
    };
    let value = object.get(KEY).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(KEY))
            .map(|(_, value)| value)
    });
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(on)) => Ok(*on),
        Some(other) => Err(format!("`{KEY}` is {other}, not true or false")),
    }
}

/// Whether `snapshot` turns the emitter on; says why when the file is unusable.
fn enabled(switch: &FileSwitch, snapshot: &Snapshot) -> bool {
    let path = switch.path.display();
    match snapshot {
        Err(ErrorKind::NotFound) => false,
        Err(kind) => {
            tracing::warn!(%path, error = %kind, "cannot read FILE_CONFIG_PATH; the emitter is off");
            false
        }
        Ok(contents) => emit_flows(contents).unwrap_or_else(|error| {
            tracing::warn!(%path, %error, "unusable FILE_CONFIG_PATH; the emitter is off");
            false
        }),
    }
}

/// Reads the file; it is a few bytes, so a blocking read costs less than a thread hop.
fn snapshot(switch: &FileSwitch) -> Snapshot {
    std::fs::read(&switch.path).map_err(|error| error.kind())
}

impl FileSwitch {
    /// The switch as a watch channel, read now and then every `poll` by a task that ends
    /// once every receiver is dropped. Must be called inside a tokio runtime.
    pub fn watch(self) -> watch::Receiver<bool> {
        let mut last = snapshot(&self);
        let (sender, receiver) = watch::channel(enabled(&self, &last));
        tracing::info!(path = %self.path.display(), on = *receiver.borrow(),
            "the emitter follows FILE_CONFIG_PATH");
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.poll);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    _ = ticks.tick() => {}
                }
                let current = snapshot(&self);
                if current == last {
                    continue;
                }
                let on = enabled(&self, &current);
                last = current;
                sender.send_if_modified(|state| {
                    let changed = *state != on;
                    if changed {
                        tracing::info!(on, "FILE_CONFIG_PATH switched the emitter");
                        *state = on;
                    }
                    changed
                });
            }
        });
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_flows_reads_goldmanes_key_as_go_does() {
        assert_eq!(emit_flows(br#"{"emitFlows": true}"#), Ok(true));
        assert_eq!(emit_flows(br#"{"emitFlows": false}"#), Ok(false));
        assert_eq!(emit_flows(br#"{"EMITFLOWS": true, "other": 1}"#), Ok(true));
        assert_eq!(
            emit_flows(br#"{"emitflows": false, "emitFlows": true}"#),
            Ok(true),
            "an exact match wins"
        );
        assert_eq!(emit_flows(br#"{"emitFlows": null}"#), Ok(false));
        assert_eq!(emit_flows(b"{}"), Ok(false));
    }

    #[test]
    fn unusable_contents_are_errors() {
        assert_eq!(
            emit_flows(br#"{"emitFlows": "true"}"#),
            Err("`emitFlows` is \"true\", not true or false".to_string())
        );
        assert_eq!(
            emit_flows(b"true"),
            Err("the file is not a JSON object".to_string())
        );
        assert!(emit_flows(b"").is_err());
        assert!(emit_flows(br#"{"emitFlows": tru"#).is_err());
    }

    #[test]
    fn a_missing_or_unusable_file_is_off() {
        let switch = FileSwitch {
            path: PathBuf::from("/nonexistent/goldmane.json"),
            poll: POLL,
        };
        assert!(!enabled(&switch, &Err(ErrorKind::NotFound)));
        assert!(!enabled(&switch, &Err(ErrorKind::PermissionDenied)));
        assert!(!enabled(&switch, &Ok(b"not json".to_vec())));
        assert!(enabled(&switch, &Ok(br#"{"emitFlows":true}"#.to_vec())));
    }
}
