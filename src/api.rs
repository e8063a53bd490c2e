//! The gRPC services, one file each, plus the conversions and the error mapping they share.

pub mod calls;
pub mod collector;
pub mod convert;
pub mod filter;
pub mod flows;
pub mod flows_wire;
pub mod framing;
pub mod oversize;
pub mod request_limits;
pub mod statistics;
pub mod statistics_encoding;
pub mod statistics_wire;
pub mod status;
pub mod timerange;
pub mod views;
pub mod views_wire;
