//! Reading PostgreSQL result values of any common type into [`Cell`]s, including NUMERIC, DATE
//! and TIMESTAMP(TZ) from their binary wire format (no decimal or date crate needed).

use super::Cell;
use sqlx::postgres::{PgRow, PgValueRef};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// Why a PostgreSQL value cannot be read into a [`Cell`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CellError {
    /// sqlx could not decode the value as its declared type.
    #[error(transparent)]
    Decode(#[from] sqlx::Error),
    /// The column's type is not one shopscribe reads.
    #[error(
        "column `{column}` has PostgreSQL type {ty}, which shopscribe does not read; cast it in the SQL (::text or ::float8)"
    )]
    UnsupportedType { column: String, ty: String },
    /// A NUMERIC, DATE or TIMESTAMP value whose bytes are not that type's wire format.
    #[error("{0}")]
    Malformed(&'static str),
}

/// The cell at column `i`; an unsupported type's error names the column and its type.
pub fn cell(row: &PgRow, i: usize) -> Result<Cell, CellError> {
    let raw: PgValueRef = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let ty = raw.type_info().name().to_string();
    let err = CellError::Decode;
    Ok(match ty.as_str() {
        "BOOL" => Cell::Int(row.try_get::<bool, _>(i).map_err(err)? as i64),
        "INT2" => Cell::Int(row.try_get::<i16, _>(i).map_err(err)? as i64),
        "INT4" => Cell::Int(row.try_get::<i32, _>(i).map_err(err)? as i64),
        "INT8" => Cell::Int(row.try_get::<i64, _>(i).map_err(err)?),
        "FLOAT4" => Cell::Float(row.try_get::<f32, _>(i).map_err(err)? as f64),
        "FLOAT8" => Cell::Float(row.try_get::<f64, _>(i).map_err(err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            Cell::Text(row.try_get::<String, _>(i).map_err(err)?)
        }
        "NUMERIC" => Cell::Float(numeric(raw.as_bytes().map_err(undecodable)?)?),
        "DATE" => Cell::Text(date(raw.as_bytes().map_err(undecodable)?)?),
        "TIMESTAMP" | "TIMESTAMPTZ" => Cell::Text(timestamp(
            raw.as_bytes().map_err(undecodable)?,
            ty == "TIMESTAMPTZ",
        )?),
        other => {
            return Err(CellError::UnsupportedType {
                column: row.columns()[i].name().to_string(),
                ty: other.to_string(),
            });
        }
    })
}

/// A value whose bytes sqlx could not hand over.
fn undecodable(e: sqlx::error::BoxDynError) -> CellError {
    CellError::Decode(sqlx::Error::Decode(e))
}

/// NUMERIC binary format: ndigits, weight, sign, dscale (i16 each), then base-10000 digits.
pub fn numeric(b: &[u8]) -> Result<f64, CellError> {
    let rd = |o: usize| -> Result<i16, CellError> {
        b.get(o..o + 2)
            .map(|x| i16::from_be_bytes([x[0], x[1]]))
            .ok_or(CellError::Malformed("short NUMERIC value"))
    };
    let (ndigits, weight, sign) = (rd(0)?, rd(2)?, rd(4)? as u16);
    if sign == 0xC000 {
        return Ok(f64::NAN);
    }
    let mut v = 0f64;
    for k in 0..ndigits.max(0) as usize {
        let d = rd(8 + 2 * k)? as f64;
        v += d * 10000f64.powi(weight as i32 - k as i32);
    }
    Ok(if sign == 0x4000 { -v } else { v })
}

fn civil(days_since_2000: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil, shifted from 1970 to 2000-01-01 (10,957 days later).
    let z = days_since_2000 + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// DATE: i32 days since 2000-01-01 → "YYYY-MM-DD".
pub fn date(b: &[u8]) -> Result<String, CellError> {
    let days = i32::from_be_bytes(
        b.try_into()
            .map_err(|_| CellError::Malformed("bad DATE value"))?,
    ) as i64;
    let (y, m, d) = civil(days);
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// TIMESTAMP(TZ): i64 microseconds since 2000-01-01 00:00 (UTC for TZ) → RFC 3339.
pub fn timestamp(b: &[u8], tz: bool) -> Result<String, CellError> {
    let us = i64::from_be_bytes(
        b.try_into()
            .map_err(|_| CellError::Malformed("bad TIMESTAMP value"))?,
    );
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    let (y, m, d) = civil(days);
    let (h, mi, s, ms) = (
        rem / 3_600_000_000,
        rem / 60_000_000 % 60,
        rem / 1_000_000 % 60,
        rem / 1000 % 1000,
    );
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}{}",
        if tz { "Z" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary() {
        // 12345.678 = digits [1, 2345, 6780], weight 1, dscale 3
        let mut b = vec![];
        for v in [3i16, 1, 0, 3, 1, 2345, 6780] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert!((numeric(&b).unwrap() - 12345.678).abs() < 1e-9);
        let mut neg = b.clone();
        neg[4..6].copy_from_slice(&0x4000u16.to_be_bytes());
        assert!((numeric(&neg).unwrap() + 12345.678).abs() < 1e-9);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(date(&0i32.to_be_bytes()).unwrap(), "2000-01-01");
        assert_eq!(date(&9821i32.to_be_bytes()).unwrap(), "2026-11-21");
        assert_eq!(date(&(-1i32).to_be_bytes()).unwrap(), "1999-12-31");
        let us: i64 = (9821 * 86_400 + 3_723) * 1_000_000 + 456_000;
        assert_eq!(
            timestamp(&us.to_be_bytes(), true).unwrap(),
            "2026-11-21T01:02:03.456Z"
        );
    }
}
