//! The `mandelbrot` kernel: escape-time counts, computed exactly as the
//! protocol specifies so every platform gives the same bits. Only IEEE-754
//! double additions, subtractions, multiplications and divisions, in a fixed
//! order; Rust never contracts them into fused multiply-adds.

use crate::spec::MandelbrotParams;

/// The real coordinate of the centre of pixel column `px`.
pub fn pixel_x(p: &MandelbrotParams, px: u32) -> f64 {
    p.x_min + (f64::from(px) + 0.5) * (p.x_max - p.x_min) / f64::from(p.width)
}

/// The imaginary coordinate of the centre of pixel row `py` (row 0 at the top).
pub fn pixel_y(p: &MandelbrotParams, py: u32) -> f64 {
    p.y_max - (f64::from(py) + 0.5) * (p.y_max - p.y_min) / f64::from(p.height)
}

/// Iterations before `z -> z^2 + c` leaves the disc of radius 2, capped at
/// `max_iter`.
pub fn escape_time(cx: f64, cy: f64, max_iter: u32) -> u32 {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    let mut n = 0;
    while n < max_iter && x * x + y * y <= 4.0 {
        let xt = x * x - y * y + cx;
        y = 2.0 * x * y + cy;
        x = xt;
        n += 1;
    }
    n
}

/// Appends the counts of rows `first..first + count`, row-major, to `out`.
pub fn render_rows(p: &MandelbrotParams, first: u32, count: u32, out: &mut Vec<u32>) {
    let xs: Vec<f64> = (0..p.width).map(|px| pixel_x(p, px)).collect();
    out.reserve(xs.len() * count as usize);
    for py in first..first + count {
        let cy = pixel_y(p, py);
        out.extend(xs.iter().map(|&cx| escape_time(cx, cy, p.max_iter)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(width: u32, height: u32, max_iter: u32) -> MandelbrotParams {
        MandelbrotParams {
            width,
            height,
            x_min: -2.0,
            x_max: 1.0,
            y_min: -1.5,
            y_max: 1.5,
            max_iter,
        }
    }

    #[test]
    fn points_inside_never_escape_and_far_points_escape_at_once() {
        assert_eq!(escape_time(0.0, 0.0, 1000), 1000);
        assert_eq!(escape_time(-1.0, 0.0, 1000), 1000);
        // |c| > 2: after one step z = c, outside the disc.
        assert_eq!(escape_time(3.0, 0.0, 1000), 1);
        // c = 1: 0, 1, 2, 5 -> escapes when z = 5 is tested.
        assert_eq!(escape_time(1.0, 0.0, 1000), 3);
        // c = 0.5: 0, 0.5, 0.75, 1.0625, 1.62890625, 3.1533... escapes on the 5th step.
        assert_eq!(escape_time(0.5, 0.0, 1000), 5);
        assert_eq!(escape_time(0.0, 0.0, 1), 1);
    }

    #[test]
    fn a_one_pixel_image_samples_the_centre() {
        let p = MandelbrotParams {
            width: 1,
            height: 1,
            x_min: -1.0,
            x_max: 1.0,
            y_min: -1.0,
            y_max: 1.0,
            max_iter: 50,
        };
        assert_eq!(pixel_x(&p, 0), 0.0);
        assert_eq!(pixel_y(&p, 0), 0.0);
        let mut out = Vec::new();
        render_rows(&p, 0, 1, &mut out);
        assert_eq!(out, vec![50]);
    }

    #[test]
    fn row_zero_is_the_top_and_the_image_is_symmetric_about_the_real_axis() {
        let p = params(31, 20, 200);
        assert!(pixel_y(&p, 0) > pixel_y(&p, 19));
        let mut image = Vec::new();
        render_rows(&p, 0, 20, &mut image);
        assert_eq!(image.len(), 31 * 20);
        for row in 0..10 {
            let top = &image[row * 31..(row + 1) * 31];
            let bottom = &image[(19 - row) * 31..(20 - row) * 31];
            assert_eq!(top, bottom, "row {row}");
        }
    }

    #[test]
    fn bands_concatenate_to_the_whole_image() {
        let p = params(17, 13, 100);
        let mut whole = Vec::new();
        render_rows(&p, 0, 13, &mut whole);
        let mut bands = Vec::new();
        render_rows(&p, 0, 5, &mut bands);
        render_rows(&p, 5, 8, &mut bands);
        assert_eq!(bands, whole);
    }

    #[test]
    fn pixel_centres_follow_the_specified_formula_bit_for_bit() {
        let p = MandelbrotParams {
            width: 3,
            height: 7,
            x_min: -0.7453,
            x_max: -0.7443,
            y_min: 0.1125,
            y_max: 0.1135,
            max_iter: 10,
        };
        // Written out as the protocol states it, term by term.
        let cx = -0.7453 + (2.0 + 0.5) * (-0.7443 - -0.7453) / 3.0;
        let cy = 0.1135 - (4.0 + 0.5) * (0.1135 - 0.1125) / 7.0;
        assert_eq!(pixel_x(&p, 2).to_bits(), f64::to_bits(cx));
        assert_eq!(pixel_y(&p, 4).to_bits(), f64::to_bits(cy));
    }
}
