//! W3C trace context (`traceparent`) carried on every message, so one Slack event can
//! be followed from the gateway through every retry to the reply.

use rand::RngCore;

/// `00-<trace id>-<parent id>-01`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
}

impl TraceParent {
    /// A new trace, for a message that starts one (an inbound Slack event).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        rng.fill_bytes(&mut trace_id);
        rng.fill_bytes(&mut parent_id);
        Self {
            trace_id,
            parent_id,
        }
    }

    /// The same trace with a new parent span, for a message derived from this one (a
    /// retry copy, a parked copy).
    pub fn child(&self) -> Self {
        let mut parent_id = [0u8; 8];
        rand::rng().fill_bytes(&mut parent_id);
        Self {
            trace_id: self.trace_id,
            parent_id,
        }
    }

    /// Parses a version-00 header; `None` for anything malformed (a new root is then used).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, _flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let parent_id: [u8; 8] = hex::decode(parent).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
        })
    }

    /// A traceparent naming an existing span (`parent_id`) of trace `trace_id`, for
    /// a message or call made within that span; `None` for the all-zero ids W3C calls
    /// invalid.
    pub fn from_ids(trace_id: [u8; 16], parent_id: [u8; 8]) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(Self {
            trace_id,
            parent_id,
        })
    }

    /// The trace id as 32 lowercase hex digits, the form logs and tracing backends show.
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span this traceparent names as the parent of whatever carries it.
    pub fn parent_id_bytes(&self) -> [u8; 8] {
        self.parent_id
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceParent::new_root();
        let parsed = TraceParent::parse(&root.to_string()).expect("parse");
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child, root);
        assert!(TraceParent::parse("01-abc-def-01").is_none());
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-0000000000000000-01").is_none()
        );
    }

    #[test]
    fn a_traceparent_built_from_ids_names_them_and_refuses_zero_ids() {
        let trace = TraceParent::from_ids([7; 16], [9; 8]).expect("valid ids");
        assert_eq!(trace.trace_id_bytes(), [7; 16]);
        assert_eq!(trace.parent_id_bytes(), [9; 8]);
        assert_eq!(
            trace.to_string(),
            "00-07070707070707070707070707070707-0909090909090909-01"
        );
        assert!(TraceParent::from_ids([0; 16], [9; 8]).is_none());
        assert!(TraceParent::from_ids([7; 16], [0; 8]).is_none());
    }
}
