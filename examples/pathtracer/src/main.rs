//! A tiny deterministic path tracer, written as a browsergrid kernel.
//!
//! One task renders one tile of a fixed scene: five spheres (a ground, three
//! diffuse balls and a glowing one that lights them) under a dim sky.
//!
//! - stdin: one line `TILE_X TILE_Y TILE_W TILE_H`, the tile's top-left
//!   pixel and size. Empty input renders the whole image.
//! - argv: `--width W --height H --samples S` (the whole image's size and the
//!   samples per pixel; 320, 240 and 16 by default), and `--ppm` or `--png`.
//! - stdout: the tile's pixels, row by row from the top, as raw RGB8
//!   (exactly `TILE_W * TILE_H * 3` bytes); with `--ppm` a binary PPM (P6)
//!   image of the tile; with `--png` a PNG of it (uncompressed: deflate's
//!   stored blocks, so the encoder is a few lines and its bytes are the
//!   same everywhere), which the dashboard's gallery shows.
//! - exit code: 0, or 2 with a message on stderr for a bad line or option.
//!
//! Determinism: the only floating-point operations are `+ - * /`, `sqrt`,
//! comparisons and conversions, which IEEE 754 rounds exactly, so every
//! engine (and a native build) computes the same bits. No `sin`, `cos` or
//! `powf`: the diffuse bounce samples a direction by rejection instead. The
//! random numbers come from a small generator in this file seeded from each
//! pixel's coordinates in the whole image, not from WASI's `random_get`:
//! a pixel gets the same value whichever tile renders it, so the tiles of any
//! tiling put together give one and the same image.
//!
//! This is also the grid's floating-point showcase: a path tracer runs
//! hundreds of millions of float operations, and any engine that rounded or
//! fused one differently would change output bytes, which redundant
//! execution would catch.

use std::io::{Read, Write};
use std::ops::{Add, AddAssign, Mul, Sub};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pathtracer: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let options = Options::parse(std::env::args().skip(1))?;

    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let tile = Tile::parse(&input, &options)?;

    let pixels = render(&tile, &options);
    let out = match options.format {
        Format::Raw => pixels,
        Format::Ppm => {
            let mut out = format!("P6\n{} {}\n255\n", tile.w, tile.h).into_bytes();
            out.extend_from_slice(&pixels);
            out
        }
        Format::Png => png(tile.w, tile.h, &pixels),
    };

    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

// ---------------------------------------------------------------------------
// Options and input

/// The job's arguments: the whole image and how to render it.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    width: u32,
    height: u32,
    samples: u32,
    format: Format,
}

/// How stdout carries the tile's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Raw,
    Ppm,
    Png,
}

/// Bounds that keep one task's work and output sane.
const MAX_SIDE: u32 = 16_384;
const MAX_SAMPLES: u32 = 65_536;

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            width: 320,
            height: 240,
            samples: 16,
            format: Format::Raw,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (field, max) = match arg.as_str() {
                "--ppm" => {
                    options.format = Format::Ppm;
                    continue;
                }
                "--png" => {
                    options.format = Format::Png;
                    continue;
                }
                "--width" => (&mut options.width, MAX_SIDE),
                "--height" => (&mut options.height, MAX_SIDE),
                "--samples" => (&mut options.samples, MAX_SAMPLES),
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?} (expected --width W --height H --samples S --ppm --png)"
                    ));
                }
            };
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            *field = match value.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "{arg} {value:?}: expected a whole number from 1 to {max}"
                    ));
                }
            };
        }
        Ok(options)
    }
}

/// The rectangle of the image that this task renders.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tile {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

impl Tile {
    fn parse(line: &str, options: &Options) -> Result<Tile, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            return Ok(Tile {
                x: 0,
                y: 0,
                w: options.width,
                h: options.height,
            });
        }
        let bad = || {
            format!(
                "input {:?}: expected four whole numbers TILE_X TILE_Y TILE_W TILE_H",
                line.trim()
            )
        };
        let numbers: Vec<u32> = fields
            .iter()
            .map(|f| f.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [x, y, w, h] = numbers[..] else {
            return Err(bad());
        };
        // u64: `x + w` must not wrap around before it is compared.
        let fits = |start: u32, len: u32, side: u32| {
            len > 0 && u64::from(start) + u64::from(len) <= u64::from(side)
        };
        if !fits(x, w, options.width) || !fits(y, h, options.height) {
            return Err(format!(
                "tile {x} {y} {w} {h} is empty or not inside the {}x{} image",
                options.width, options.height
            ));
        }
        Ok(Tile { x, y, w, h })
    }
}

// ---------------------------------------------------------------------------
// Vectors, rays and the scene

#[derive(Debug, Clone, Copy, PartialEq)]
struct Vec3 {
    x: f64,
    y: f64,
    z: f64,
}

const fn v(x: f64, y: f64, z: f64) -> Vec3 {
    Vec3 { x, y, z }
}

impl Vec3 {
    const ZERO: Vec3 = v(0.0, 0.0, 0.0);
    const ONE: Vec3 = v(1.0, 1.0, 1.0);

    fn dot(self, o: Vec3) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    fn cross(self, o: Vec3) -> Vec3 {
        v(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }
    fn length(self) -> f64 {
        self.dot(self).sqrt()
    }
    fn normalized(self) -> Vec3 {
        self * (1.0 / self.length())
    }
    /// Component-wise product: a color filtered by a surface's albedo.
    fn tint(self, o: Vec3) -> Vec3 {
        v(self.x * o.x, self.y * o.y, self.z * o.z)
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        v(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}
impl AddAssign for Vec3 {
    fn add_assign(&mut self, o: Vec3) {
        *self = *self + o;
    }
}
impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        v(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}
impl Mul<f64> for Vec3 {
    type Output = Vec3;
    fn mul(self, s: f64) -> Vec3 {
        v(self.x * s, self.y * s, self.z * s)
    }
}

#[derive(Debug, Clone, Copy)]
struct Ray {
    origin: Vec3,
    dir: Vec3, // unit length
}

struct Sphere {
    center: Vec3,
    radius: f64,
    /// The fraction of light a diffuse bounce keeps, per channel.
    albedo: Vec3,
    /// Light the surface gives off; a light reflects nothing.
    emission: Vec3,
}

const fn diffuse(center: Vec3, radius: f64, albedo: Vec3) -> Sphere {
    Sphere {
        center,
        radius,
        albedo,
        emission: Vec3::ZERO,
    }
}

/// The scene: a huge sphere for the ground, three balls and a light above.
const SCENE: [Sphere; 5] = [
    diffuse(v(0.0, -1000.0, 0.0), 1000.0, v(0.75, 0.75, 0.7)),
    diffuse(v(-1.25, 0.5, 0.1), 0.5, v(0.8, 0.25, 0.2)),
    diffuse(v(0.0, 0.75, -0.5), 0.75, v(0.85, 0.85, 0.85)),
    diffuse(v(1.2, 0.4, 0.4), 0.4, v(0.2, 0.35, 0.8)),
    Sphere {
        center: v(-1.5, 4.5, 2.0),
        radius: 2.0,
        albedo: Vec3::ZERO,
        emission: v(3.0, 2.7, 2.2),
    },
];

/// What a ray that escapes the scene sees: a dim blue sky.
const SKY: Vec3 = v(0.12, 0.16, 0.24);

/// Hits closer than this are the surface a ray just left.
const T_MIN: f64 = 1e-6;

/// How many surfaces a path may bounce off before it is cut.
const MAX_BOUNCES: u32 = 6;

impl Sphere {
    /// The distance along `ray` to this sphere's surface, if it is hit.
    fn hit(&self, ray: &Ray) -> Option<f64> {
        // |o + t d - c|^2 = r^2 with |d| = 1: t^2 + 2 b t + c = 0.
        let oc = ray.origin - self.center;
        let b = oc.dot(ray.dir);
        let c = oc.dot(oc) - self.radius * self.radius;
        let discriminant = b * b - c;
        if discriminant < 0.0 {
            return None;
        }
        let root = discriminant.sqrt();
        [-b - root, -b + root].into_iter().find(|&t| t > T_MIN)
    }
}

/// The nearest sphere along `ray` and the distance to it.
fn nearest_hit(ray: &Ray) -> Option<(&'static Sphere, f64)> {
    let mut best: Option<(&'static Sphere, f64)> = None;
    for sphere in &SCENE {
        if let Some(t) = sphere.hit(ray)
            && best.is_none_or(|(_, nearest)| t < nearest)
        {
            best = Some((sphere, t));
        }
    }
    best
}

// ---------------------------------------------------------------------------
// Random numbers

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast and good enough
/// for sampling. The whole state is one u64.
struct Rng(u64);

impl Rng {
    /// The generator of pixel (x, y): its sequence depends on nothing else.
    fn for_pixel(x: u32, y: u32) -> Rng {
        let mut rng = Rng((u64::from(y) << 32 | u64::from(x)) ^ 0x2545_f491_4f6c_dd1d);
        rng.next_u64(); // one round to spread the coordinates' bits
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits, which an f64 holds exactly.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniformly distributed unit vector, by rejection: a point in the
    /// cube [-1, 1)^3 kept if it falls inside the unit ball, then scaled to
    /// its surface. No trigonometry, so no libm.
    fn unit_vector(&mut self) -> Vec3 {
        loop {
            let p = v(
                2.0 * self.next_f64() - 1.0,
                2.0 * self.next_f64() - 1.0,
                2.0 * self.next_f64() - 1.0,
            );
            let len2 = p.dot(p);
            if len2 > 1e-12 && len2 <= 1.0 {
                return p * (1.0 / len2.sqrt());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Camera and rendering

/// A pinhole camera looking from above and in front of the balls.
struct Camera {
    origin: Vec3,
    /// The image plane's top-left corner, and its extent across and down.
    top_left: Vec3,
    across: Vec3,
    down: Vec3,
    width: f64,
    height: f64,
}

impl Camera {
    fn new(width: u32, height: u32) -> Camera {
        let origin = v(0.0, 1.4, 5.0);
        let look_at = v(0.0, 0.6, 0.0);
        // tan(20 degrees): a 40-degree vertical field of view, written out
        // so that no libm `tan` is needed.
        let half_height = 0.363_970_234_266_202_36;
        let half_width = half_height * f64::from(width) / f64::from(height);

        let forward = (look_at - origin).normalized();
        let right = forward.cross(v(0.0, 1.0, 0.0)).normalized();
        let up = right.cross(forward);
        Camera {
            origin,
            top_left: origin + forward + up * half_height - right * half_width,
            across: right * (2.0 * half_width),
            down: up * (-2.0 * half_height),
            width: f64::from(width),
            height: f64::from(height),
        }
    }

    /// The ray through point (x, y) of the image, in pixels from its top-left.
    fn ray(&self, x: f64, y: f64) -> Ray {
        let target = self.top_left + self.across * (x / self.width) + self.down * (y / self.height);
        Ray {
            origin: self.origin,
            dir: (target - self.origin).normalized(),
        }
    }
}

/// The light arriving along `ray`: a random walk of diffuse bounces.
fn radiance(mut ray: Ray, rng: &mut Rng) -> Vec3 {
    let mut light = Vec3::ZERO;
    let mut throughput = Vec3::ONE;
    for _ in 0..MAX_BOUNCES {
        let Some((sphere, t)) = nearest_hit(&ray) else {
            light += throughput.tint(SKY);
            break;
        };
        light += throughput.tint(sphere.emission);
        if sphere.albedo == Vec3::ZERO {
            break; // a light: nothing bounces off it
        }
        let point = ray.origin + ray.dir * t;
        let normal = (point - sphere.center) * (1.0 / sphere.radius);
        // Lambertian reflection: the normal plus a random unit vector gives
        // directions distributed as cos(theta), so the albedo alone weighs
        // the bounce. (The sum is never zero: `unit_vector` is never
        // exactly -normal in practice, and `normalized` of a zero vector
        // would only give NaNs that `to_rgb8` turns into 0.)
        let bounce = (normal + rng.unit_vector()).normalized();
        throughput = throughput.tint(sphere.albedo);
        ray = Ray {
            origin: point,
            dir: bounce,
        };
    }
    light
}

/// The average of `samples` paths through random points of pixel (x, y).
fn render_pixel(camera: &Camera, x: u32, y: u32, samples: u32) -> Vec3 {
    let mut rng = Rng::for_pixel(x, y);
    let mut sum = Vec3::ZERO;
    for _ in 0..samples {
        let px = f64::from(x) + rng.next_f64();
        let py = f64::from(y) + rng.next_f64();
        sum += radiance(camera.ray(px, py), &mut rng);
    }
    sum * (1.0 / f64::from(samples))
}

/// The tile's pixels as RGB8, row by row from the top.
fn render(tile: &Tile, options: &Options) -> Vec<u8> {
    let camera = Camera::new(options.width, options.height);
    let mut rgb = Vec::with_capacity(tile.w as usize * tile.h as usize * 3);
    for y in tile.y..tile.y + tile.h {
        for x in tile.x..tile.x + tile.w {
            rgb.extend_from_slice(&to_rgb8(render_pixel(&camera, x, y, options.samples)));
        }
    }
    rgb
}

/// Linear light to 8-bit sRGB-ish: clamp to [0, 1], gamma 2 (a square
/// root), round. A float-to-int `as` saturates and maps NaN to 0.
fn to_rgb8(c: Vec3) -> [u8; 3] {
    let channel = |x: f64| (x.clamp(0.0, 1.0).sqrt() * 255.0 + 0.5) as u8;
    [channel(c.x), channel(c.y), channel(c.z)]
}

// ---------------------------------------------------------------------------
// PNG, uncompressed

/// A PNG of `w` x `h` RGB8 `pixels`: the signature, IHDR, one IDAT holding a
/// zlib stream of stored (uncompressed) deflate blocks, each row behind
/// filter byte 0, and IEND.
fn png(w: u32, h: u32, pixels: &[u8]) -> Vec<u8> {
    let row = w as usize * 3;
    let mut raw = Vec::with_capacity(pixels.len() + h as usize);
    for line in pixels.chunks(row.max(1)).take(h as usize) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    // zlib: CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (a multiple of 31
    // with CMF), the blocks, then the Adler-32 of the raw bytes.
    let mut zlib = vec![0x78, 0x01];
    let mut blocks = raw.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        zlib.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let len = block.len() as u16;
        zlib.push(u8::from(blocks.peek().is_none()));
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&w.to_be_bytes());
    header.extend_from_slice(&h.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// One PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(kind.iter().chain(data));
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), bit by bit: PNG
/// chunks here are few, so no table.
fn crc32<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

/// Adler-32, as zlib ends a stream with.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_have_defaults_and_bounds() {
        let o = Options::parse(args("")).unwrap();
        assert_eq!(
            (o.width, o.height, o.samples, o.format),
            (320, 240, 16, Format::Raw)
        );
        let o = Options::parse(args("--ppm --width 64 --height 48 --samples 2")).unwrap();
        assert_eq!(
            (o.width, o.height, o.samples, o.format),
            (64, 48, 2, Format::Ppm)
        );
        assert_eq!(Options::parse(args("--png")).unwrap().format, Format::Png);
        assert!(Options::parse(args("--width 0")).is_err());
        assert!(Options::parse(args("--samples")).is_err());
        assert!(Options::parse(args("--depth 3")).is_err());
    }

    #[test]
    fn tiles_must_lie_inside_the_image() {
        let o = Options::parse(args("--width 64 --height 48")).unwrap();
        assert_eq!(
            Tile::parse("\n", &o).unwrap(),
            Tile {
                x: 0,
                y: 0,
                w: 64,
                h: 48
            }
        );
        assert_eq!(
            Tile::parse("32 16 32 32\n", &o).unwrap(),
            Tile {
                x: 32,
                y: 16,
                w: 32,
                h: 32
            }
        );
        for bad in [
            "32 16 33 32",
            "0 0 0 1",
            "1 2 3",
            "1 2 3 4 5",
            "a b c d",
            "4294967295 0 2 1",
        ] {
            assert!(Tile::parse(bad, &o).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiles_put_together_give_the_whole_image() {
        let o = Options::parse(args("--width 12 --height 8 --samples 2")).unwrap();
        let whole = render(
            &Tile {
                x: 0,
                y: 0,
                w: 12,
                h: 8,
            },
            &o,
        );
        assert_eq!(whole.len(), 12 * 8 * 3);
        // Two tiles side by side, 5 and 7 pixels wide, row by row.
        let left = render(
            &Tile {
                x: 0,
                y: 0,
                w: 5,
                h: 8,
            },
            &o,
        );
        let right = render(
            &Tile {
                x: 5,
                y: 0,
                w: 7,
                h: 8,
            },
            &o,
        );
        let joined: Vec<u8> = left
            .chunks(5 * 3)
            .zip(right.chunks(7 * 3))
            .flat_map(|(l, r)| l.iter().chain(r).copied())
            .collect();
        assert_eq!(joined, whole);
    }

    #[test]
    fn the_light_and_the_sky_show() {
        let camera = Camera::new(64, 48);
        // The top-left corner looks at the sky, the centre at the grey ball.
        let sky = render_pixel(&camera, 0, 0, 8);
        assert_eq!(to_rgb8(sky), to_rgb8(SKY));
        let ball = to_rgb8(render_pixel(&camera, 32, 24, 64));
        assert!(ball.iter().all(|&c| c > 60), "{ball:?}");
    }

    #[test]
    fn the_checksums_match_their_published_values() {
        // CRC-32 of "123456789" is its standard check value; an IEND
        // chunk's CRC is AE 42 60 82 in every PNG; Adler-32 of "Wikipedia".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        // Past the 5552-byte stretch where the sums are reduced.
        let long: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }

    /// The rows inside a PNG made by [`png`], read back by walking its
    /// chunks and stored blocks (and checking every checksum).
    fn unpng(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (mut at, mut header, mut zlib) = (8, None, Vec::new());
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            let data = &bytes[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc32(kind.iter().chain(data)));
            match kind {
                b"IHDR" => header = Some(data.to_vec()),
                b"IDAT" => zlib.extend_from_slice(data),
                b"IEND" => assert_eq!(at + 12, bytes.len(), "IEND comes last"),
                other => panic!("unexpected chunk {other:?}"),
            }
            at += 12 + len;
        }
        let header = header.expect("an IHDR");
        assert_eq!(&header[8..], &[8, 2, 0, 0, 0]);
        let w = u32::from_be_bytes(header[..4].try_into().unwrap());
        let h = u32::from_be_bytes(header[4..8].try_into().unwrap());
        assert_eq!(&zlib[..2], &[0x78, 0x01]);
        assert_eq!((u32::from(zlib[0]) << 8 | u32::from(zlib[1])) % 31, 0);
        let (mut at, mut raw) = (2, Vec::new());
        loop {
            let last = zlib[at] == 1;
            let len = u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]);
            let nlen = u16::from_le_bytes([zlib[at + 3], zlib[at + 4]]);
            assert_eq!(nlen, !len);
            raw.extend_from_slice(&zlib[at + 5..at + 5 + len as usize]);
            at += 5 + len as usize;
            if last {
                break;
            }
        }
        assert_eq!(zlib[at..], adler32(&raw).to_be_bytes());
        let row = w as usize * 3 + 1;
        assert_eq!(raw.len(), row * h as usize);
        let mut pixels = Vec::new();
        for line in raw.chunks(row) {
            assert_eq!(line[0], 0, "filter type 0");
            pixels.extend_from_slice(&line[1..]);
        }
        (w, h, pixels)
    }

    #[test]
    fn a_png_holds_the_tiles_pixels() {
        // Small, and big enough for several stored blocks (65,535 bytes).
        for (w, h) in [(1, 1), (7, 3), (200, 150)] {
            let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(unpng(&png(w, h, &pixels)), (w, h, pixels));
        }
    }
}
