//! A flow as clients send it (`kind: "flow"`): its steps, each an `http`, `sleep` or `file` job
//! read and validated as any job is, the names its `http` steps capture in scope for the steps
//! after them.

use std::sync::Arc;

use super::super::FieldError;
use super::super::shape;
use super::{JobRequest, JobSlot, Scope};
use crate::engine::spec::{FlowJob, JobKind};

/// Most steps a flow may have.
pub const MAX_STEPS: usize = 64;

job_request! {
    /// Steps run one after another in one task (asyncio's `r = await f(); await g(r)`): what
    /// an `http` step captures (`capture`) its later steps use as `{{NAME}}`. The first step
    /// that fails ends the flow (`error.step`); the steps after it are `skipped`. `timeout_ms`
    /// bounds the whole flow; each step keeps its own `timeout_ms`, `retries` and `checks`.
    pub struct FlowJobRequest {
        /// 1 to 64 jobs of kind `http`, `sleep` or `file` (not `flow`).
        #[schema(value_type = Vec<Object>, min_items = 1, max_items = 64)]
        pub steps: Vec<serde_json::Value>,
        /// Default true: a cookie jar of the task's own (RFC 6265), carried across its steps:
        /// what a step's answer sets, the later steps send where it applies.
        pub cookies: Option<bool>,
    }
}

impl FlowJobRequest {
    /// The flow, each of its steps validated at `{at}.steps[i]`.
    pub(super) fn kind(
        &mut self,
        at: &str,
        scope: &mut Scope<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<JobKind> {
        let before = errors.len();
        if self.retries.is_some() {
            errors.push(FieldError::new(
                format!("{at}.retries"),
                "a flow is not retried as a whole: give its steps retries",
            ));
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            errors.push(FieldError::new(
                format!("{at}.steps"),
                format!("1 to {MAX_STEPS} steps; got {}", self.steps.len()),
            ));
        }
        let mut captures = Vec::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, value) in std::mem::take(&mut self.steps).into_iter().enumerate() {
            let step_at = format!("{at}.steps[{i}]");
            let slot = JobSlot::read(value, &step_at);
            let mut found = Vec::new();
            match slot.request {
                Some(JobRequest::Flow(_)) => found.push(FieldError::new(
                    format!("{step_at}.kind"),
                    "a flow's steps are http, sleep or file jobs, not flows",
                )),
                Some(request) => {
                    let mut inner = Scope {
                        limits: scope.limits,
                        patterns: &mut *scope.patterns,
                        captures: Some(&mut captures),
                    };
                    if let Some(step) = request.validate(&step_at, &mut inner, &mut found) {
                        steps.push(step);
                    }
                }
                None => {}
            }
            errors.extend(shape::merge(slot.flaws, found));
        }
        let cookies = self.cookies.unwrap_or(true);
        for step in &mut steps {
            if let JobKind::Http(http) = &mut step.kind {
                http.cookies = cookies;
            }
        }
        (errors.len() == before).then(|| JobKind::Flow(Arc::new(FlowJob { steps, cookies })))
    }
}
