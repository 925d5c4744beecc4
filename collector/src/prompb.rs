//! The Prometheus remote_write 1.0 messages (`prometheus/prompb/types.proto` and
//! `remote.proto`), written out as prost structs: only the fields a receiver reads.
//! Unknown fields (exemplars, native histograms, metadata) are skipped by prost.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` among them; sorted by name by the sender.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix ms.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl WriteRequest {
    /// The body a remote_write sender posts: this request as snappy-compressed protobuf.
    pub fn to_snappy(&self) -> Vec<u8> {
        let raw = prost::Message::encode_to_vec(self);
        // Compressing into a buffer of `max_compress_len` cannot fail.
        let mut out = vec![0; snap::raw::max_compress_len(raw.len())];
        let n = snap::raw::Encoder::new()
            .compress(&raw, &mut out)
            .unwrap_or_default();
        out.truncate(n);
        out
    }
}
