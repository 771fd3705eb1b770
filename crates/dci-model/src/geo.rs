//! Geographic points and round-trip-time estimates.
//!
//! Latency is estimated from great-circle distance at about 100 km of
//! distance per millisecond of round trip in fibre (R-IX1), refined by
//! measured RTT where the caller has one.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Mean Earth radius in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0;
/// Kilometres of great-circle distance per millisecond of round trip.
pub const KM_PER_RTT_MS: f64 = 100.0;

/// A point on Earth in degrees (WGS84 latitude and longitude).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "(f64, f64)", into = "(f64, f64)")]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

/// Why a latitude/longitude pair is not a point on Earth.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected LAT,LON with latitude in [-90, 90] and longitude in [-180, 180], found {0}")]
pub struct GeoError(pub String);

impl GeoPoint {
    /// A validated point.
    pub fn new(lat: f64, lon: f64) -> Result<Self, GeoError> {
        if lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
            Ok(GeoPoint { lat, lon })
        } else {
            Err(GeoError(format!("{lat},{lon}")))
        }
    }

    /// Latitude in degrees.
    pub fn lat(&self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    pub fn lon(&self) -> f64 {
        self.lon
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(&self, o: &GeoPoint) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), o.lat.to_radians());
        let dp = p2 - p1;
        let dl = (o.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }

    /// Estimated round trip in whole milliseconds (at least 1).
    pub fn estimated_rtt_ms(&self, o: &GeoPoint) -> u32 {
        ((self.distance_km(o) / KM_PER_RTT_MS).ceil() as u32).max(1)
    }
}

impl TryFrom<(f64, f64)> for GeoPoint {
    type Error = GeoError;
    fn try_from((lat, lon): (f64, f64)) -> Result<Self, Self::Error> {
        GeoPoint::new(lat, lon)
    }
}

impl From<GeoPoint> for (f64, f64) {
    fn from(p: GeoPoint) -> Self {
        (p.lat, p.lon)
    }
}

impl FromStr for GeoPoint {
    type Err = GeoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GeoError(s.to_owned());
        let (a, b) = s.split_once(',').ok_or_else(err)?;
        let lat = a.trim().parse().map_err(|_| err())?;
        let lon = b.trim().parse().map_err(|_| err())?;
        GeoPoint::new(lat, lon)
    }
}

impl fmt::Display for GeoPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4},{:.4}", self.lat, self.lon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_rtt() {
        let lisbon: GeoPoint = "38.72,-9.14".parse().unwrap();
        let frankfurt: GeoPoint = "50.11,8.68".parse().unwrap();
        let d = lisbon.distance_km(&frankfurt);
        assert!((1850.0..1900.0).contains(&d), "{d}");
        assert_eq!(lisbon.estimated_rtt_ms(&frankfurt), 19);
        assert_eq!(lisbon.estimated_rtt_ms(&lisbon), 1);
        for bad in ["91,0", "0,181", "x,1", "1", "NaN,0"] {
            assert!(bad.parse::<GeoPoint>().is_err(), "{bad}");
        }
    }
}
