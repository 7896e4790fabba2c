//! NumPy arrays: `.npy` files and arrays inside `.npz` archives (`np.savez`,
//! `np.savez_compressed`), read as float32; and `.npy` output of `nnc predict`.

use std::io::{BufReader, Read};
use std::path::Path;

use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

use super::error::{DataError, DataErrorKind as K};

/// A numeric array: its shape (first axis the sample) and values as float32,
/// row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The most values nnc reads from one array (16 GiB of float32).
const MAX_VALUES: u64 = 4 << 30;

/// Reads the `.npy` file `path`.
pub fn read_npy(path: &Path) -> Result<Array, DataError> {
    decode(open_npy(path)?, path, None)
}

fn cannot_read(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::in_file(
        path,
        K::CannotRead {
            what: None,
            reason: e.to_string(),
        },
    )
}

fn open_npy(path: &Path) -> Result<NpyFile<BufReader<std::fs::File>>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| cannot_read(path, e))?;
    NpyFile::new(BufReader::new(f)).map_err(|e| {
        DataError::in_file(
            path,
            K::NotNpy {
                reason: e.to_string(),
            },
        )
    })
}

/// The shape of the array in `.npy` file `path` (or of member `member` of the
/// `.npz` archive `path`), from its header alone: what `nnc check` reads of a file
/// too large to read whole. The header is checked as `read_npy` checks it.
pub fn shape(path: &Path, member: Option<&str>) -> Result<Vec<usize>, DataError> {
    match member {
        None => header(&open_npy(path)?, path, None),
        Some(name) => {
            let mut archive = open_npz(path)?;
            let member = archive
                .by_name(&format!("{name}.npy"))
                .map_err(|_| no_array(path, name))?;
            let npy = open_member(member, path, name)?;
            header(&npy, path, Some(name))
        }
    }
}

/// Array `name` of the archive `path`, its header read.
fn open_member<R: Read>(member: R, path: &Path, name: &str) -> Result<NpyFile<R>, DataError> {
    NpyFile::new(member).map_err(|e| {
        DataError::in_file(
            path,
            K::NotNpy {
                reason: e.to_string(),
            },
        )
        .in_array(Some(name))
    })
}

/// The array names of the `.npz` archive `path` (its `NAME.npy` members), sorted.
pub fn npz_names(path: &Path) -> Result<Vec<String>, DataError> {
    let archive = open_npz(path)?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.strip_suffix(".npy"))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

fn open_npz(path: &Path) -> Result<zip::ZipArchive<BufReader<std::fs::File>>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| cannot_read(path, e))?;
    zip::ZipArchive::new(BufReader::new(f)).map_err(|e| {
        DataError::in_file(
            path,
            K::NotNpz {
                reason: e.to_string(),
            },
        )
    })
}

/// Reads array `name` of the `.npz` archive `path` (`np.savez` or
/// `np.savez_compressed`).
pub fn read_npz(path: &Path, name: &str) -> Result<Array, DataError> {
    let mut archive = open_npz(path)?;
    let member = match archive.by_name(&format!("{name}.npy")) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => return Err(no_array(path, name)),
        Err(e) => {
            return Err(DataError::in_file(
                path,
                K::CannotRead {
                    what: Some("it".into()),
                    reason: e.to_string(),
                },
            )
            .in_array(Some(name)))
        }
    };
    let npy = open_member(member, path, name)?;
    decode(npy, path, Some(name))
}

/// "no array named ...", listing the arrays the archive does hold.
fn no_array(path: &Path, name: &str) -> DataError {
    DataError::in_file(
        path,
        K::NoArray {
            name: name.into(),
            available: npz_names(path).unwrap_or_default(),
        },
    )
}

/// The shape of `npy` from its header, refusing what `decode` would refuse before
/// reading a value: Fortran order, absurd sizes, types other than the five read.
/// `path` and `array` (the member of an `.npz` archive) name the array in errors.
fn header<R: Read>(
    npy: &NpyFile<R>,
    path: &Path,
    array: Option<&str>,
) -> Result<Vec<usize>, DataError> {
    let err = |kind| DataError::in_file(path, kind).in_array(array);
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() == Order::Fortran {
        return Err(err(K::FortranOrder));
    }
    npy.shape()
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| {
            err(K::ShapeTooLarge {
                shape: shape.clone(),
            })
        })?;
    let dtype = npy.dtype();
    let DType::Plain(ts) = &dtype else {
        return Err(err(K::StructuredArray));
    };
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4 | 8) | (TypeChar::Uint, 1) | (TypeChar::Int, 4 | 8) => Ok(shape),
        _ => Err(err(K::UnsupportedDtype {
            dtype: ts.to_string(),
        })),
    }
}

/// The values of `npy` as float32, refusing types NumPy data sets do not use for
/// features and labels.
fn decode<R: Read>(npy: NpyFile<R>, path: &Path, array: Option<&str>) -> Result<Array, DataError> {
    let err = |kind| DataError::in_file(path, kind).in_array(array);
    let shape = header(&npy, path, array)?;
    // `header` checked that the product fits.
    let count: u64 = shape.iter().map(|&d| d as u64).product();
    let dtype = npy.dtype();
    let DType::Plain(ts) = &dtype else {
        return Err(err(K::StructuredArray));
    };
    let truncated = |e: std::io::Error| {
        err(K::ArrayTruncated {
            reason: e.to_string(),
            count,
            shape: shape.clone(),
        })
    };
    let values: Vec<f32> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map_err(truncated)?,
        (TypeChar::Float, 8) => to_f32(npy.into_vec::<f64>().map_err(truncated)?, |v| v as f32),
        (TypeChar::Uint, 1) => to_f32(npy.into_vec::<u8>().map_err(truncated)?, f32::from),
        (TypeChar::Int, 4) => to_f32(npy.into_vec::<i32>().map_err(truncated)?, |v| v as f32),
        (TypeChar::Int, 8) => to_f32(npy.into_vec::<i64>().map_err(truncated)?, |v| v as f32),
        _ => {
            return Err(err(K::UnsupportedDtype {
                dtype: ts.to_string(),
            }))
        }
    };
    if values.len() as u64 != count {
        return Err(err(K::ValueCount {
            found: values.len(),
            count,
            shape,
        }));
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(err(K::NotFiniteValue {
            index,
            value: values[index],
        }));
    }
    Ok(Array { shape, values })
}

fn to_f32<T>(v: Vec<T>, f: impl Fn(T) -> f32) -> Vec<f32> {
    v.into_iter().map(f).collect()
}

/// The bytes of a float32 `.npy` file of `shape` holding `values`.
pub fn encode_f32(shape: &[usize], values: &[f32]) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .map_err(|e| format!("cannot encode the .npy array: {e}"))?;
    w.extend(values.iter().copied())
        .and_then(|()| w.finish())
        .map_err(|e| format!("cannot encode the .npy array: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_round_trips_and_truncation_is_refused() {
        let values = [1.5f32, -2.0, 0.25, 7.0, 8.0, 9.0];
        let bytes = encode_f32(&[2, 3], &values).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        std::fs::write(&path, &bytes).unwrap();
        let a = read_npy(&path).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.values, values);
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let e = read_npy(&path).unwrap_err().to_string();
        assert!(e.contains("ends early"), "{e}");
    }
}
