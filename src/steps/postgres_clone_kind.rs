//! [`Kind`] for `postgres.clone`, delegating to the methods of
//! [`postgres_clone::Params`](super::postgres_clone::Params). Kept apart only
//! while that module is being split; it belongs in the kind's own module.

use std::future::Future;

use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;

use super::postgres_clone::Params;
use super::{Kind, StepCtx, StepError, StepOutcome, TargetUse};

impl Kind for Params {
    const NAME: &'static str = "postgres.clone";
    const OUTPUTS: &'static [&'static str] = &["tables", "rows", "bytes", "anonymized_values"];
    const DESTRUCTIVE: bool = true;

    // `Params::…` names the inherent methods, which take precedence over
    // this trait's.
    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        Params::parse(with, cx)
    }

    fn templates(&self) -> Vec<&Template> {
        Params::templates(self)
    }

    fn target_uses(&self) -> Vec<TargetUse> {
        Params::target_uses(self)
    }

    fn plan(&self, ctx: &StepCtx) -> impl Future<Output = Result<StepOutcome, StepError>> + Send {
        Params::plan(self, ctx)
    }

    fn run(&self, ctx: &StepCtx) -> impl Future<Output = Result<StepOutcome, StepError>> + Send {
        Params::run(self, ctx)
    }
}
