//! A finished job's result in the formats `grid results` offers: JSON (the
//! result object), CSV (the same as a table), and PNG (a Mandelbrot job as a
//! colour-mapped picture).

use std::fmt::Write as _;

use grid_kernels::JobResult;
pub use grid_protocol::api::ExportFormat as Format;

/// Renders a result. Fails only for PNG of a non-image result.
pub fn render(result: &JobResult, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => Ok(serde_json::to_vec(result).expect("results are plain data")),
        Format::Csv => Ok(csv(result).into_bytes()),
        Format::Png => match result {
            JobResult::Mandelbrot {
                width,
                height,
                max_iter,
                iterations,
            } => Ok(png(*width, *height, *max_iter, iterations)),
            _ => Err("png export is only available for mandelbrot jobs".into()),
        },
    }
}

fn csv(result: &JobResult) -> String {
    let mut out = String::new();
    match result {
        JobResult::Primes { count } => {
            out.push_str("count\n");
            let _ = writeln!(out, "{count}");
        }
        JobResult::MontecarloPi {
            inside,
            samples,
            estimate,
        } => {
            out.push_str("inside,samples,estimate\n");
            let _ = writeln!(out, "{inside},{samples},{estimate}");
        }
        JobResult::Hashsearch { nonces } => {
            out.push_str("nonce\n");
            for nonce in nonces {
                let _ = writeln!(out, "{nonce}");
            }
        }
        JobResult::Mandelbrot {
            width, iterations, ..
        } => {
            out.push_str("x,y,iterations\n");
            for (i, n) in iterations.iter().enumerate() {
                let _ = writeln!(out, "{},{},{n}", i % *width as usize, i / *width as usize);
            }
        }
        JobResult::Wasm { tasks } => {
            out.push_str("task,name,exit_code,fuel_used,output_sha256,output_bytes,trap,stderr\n");
            for t in tasks {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    t.task,
                    csv_field(&t.name),
                    t.exit_code,
                    t.fuel_used,
                    t.output_sha256,
                    t.output_bytes,
                    t.trap.map_or("", |trap| trap.name()),
                    csv_field(&t.stderr)
                );
            }
        }
    }
    out
}

/// A CSV field (RFC 4180): quoted, with quotes doubled, when it holds a
/// comma, a quote or a line break.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// The colour of an escape count: black inside the set, outside a gradient
/// from deep blue through orange to pale yellow, on a logarithmic scale so
/// both the slow halo and the thin filaments near the boundary show.
pub fn colour(n: u32, max_iter: u32) -> [u8; 3] {
    if n >= max_iter {
        return [0, 0, 0];
    }
    let t = f64::from(n).ln_1p() / f64::from(max_iter).ln_1p();
    const STOPS: [(f64, [f64; 3]); 4] = [
        (0.0, [9.0, 1.0, 47.0]),
        (0.35, [24.0, 82.0, 177.0]),
        (0.7, [248.0, 148.0, 33.0]),
        (1.0, [255.0, 250.0, 205.0]),
    ];
    let upper = STOPS
        .iter()
        .position(|&(at, _)| at >= t)
        .unwrap_or(STOPS.len() - 1)
        .max(1);
    let (t0, c0) = STOPS[upper - 1];
    let (t1, c1) = STOPS[upper];
    let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
    let mix = |i: usize| (c0[i] + (c1[i] - c0[i]) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

fn png(width: u32, height: u32, max_iter: u32, iterations: &[u32]) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(iterations.len() * 3);
    for &n in iterations {
        pixels.extend_from_slice(&colour(n, max_iter));
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("writing to memory");
        writer
            .write_image_data(&pixels)
            .expect("the buffer matches the dimensions");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tables_have_a_header_and_one_row_per_item() {
        assert_eq!(csv(&JobResult::Primes { count: 168 }), "count\n168\n");
        assert_eq!(
            csv(&JobResult::Hashsearch { nonces: vec![3, 9] }),
            "nonce\n3\n9\n"
        );
        let image = JobResult::Mandelbrot {
            width: 2,
            height: 1,
            max_iter: 5,
            iterations: vec![5, 1],
        };
        assert_eq!(csv(&image), "x,y,iterations\n0,0,5\n1,0,1\n");
    }

    #[test]
    fn png_has_the_image_dimensions_and_black_inside_the_set() {
        let image = JobResult::Mandelbrot {
            width: 3,
            height: 2,
            max_iter: 10,
            iterations: vec![10, 0, 5, 1, 2, 3],
        };
        let bytes = render(&image, Format::Png).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..3], &[0, 0, 0]);
        assert_ne!(&buf[3..6], &[0, 0, 0]);
        assert!(render(&JobResult::Primes { count: 1 }, Format::Png).is_err());
    }

    #[test]
    fn colours_run_from_dark_to_light_outside_the_set() {
        let brightness = |c: [u8; 3]| c.iter().map(|&v| u32::from(v)).sum::<u32>();
        assert!(brightness(colour(1, 100)) < brightness(colour(50, 100)));
        assert!(brightness(colour(50, 100)) < brightness(colour(99, 100)));
        assert_eq!(colour(100, 100), [0, 0, 0]);
    }
}
