//! The generated types and services of `proto/goldmane.proto` (package `goldmane`).
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("goldmane");
