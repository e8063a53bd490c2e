//! The `Statistics` service (SPEC §8): answers `UNIMPLEMENTED` until per-policy statistics
//! are built.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::proto::statistics_server::Statistics;
use crate::proto::{StatisticsRequest, StatisticsResult};

/// The `Statistics` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatisticsService;

#[tonic::async_trait]
impl Statistics for StatisticsService {
    type ListStream =
        Pin<Box<dyn Stream<Item = Result<StatisticsResult, Status>> + Send + 'static>>;

    async fn list(
        &self,
        _request: Request<StatisticsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Err(Status::unimplemented(
            "Statistics.List is not available yet",
        ))
    }
}
