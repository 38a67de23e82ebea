//! Inline image previews: terminal graphics where the terminal has them,
//! half blocks otherwise.
//!
//! At start the app asks the terminal what it supports (`ratatui-image`'s
//! [`Picker`] query: kitty graphics, sixel, iTerm2). Where one of those
//! exists, each image becomes a fixed-size [`Graphic`] when its message
//! arrives, drawn whole when all of it is on screen.
//!
//! Everywhere else, and for an image scrolled half out of view (sixel cannot
//! draw part of an image), the [`Preview`] is drawn with half blocks: each
//! cell shows two pixels stacked, the upper as the foreground of `▀`, the
//! lower as the background. That works in any colour terminal and needs no
//! escape sequences.
//!
//! Decoding happens once, when the message arrives, with size limits: the
//! image is shrunk to a thumbnail of at most [`MAX_PREVIEW_PX`] on a side,
//! and drawing samples that thumbnail for whatever area the chat gives it.

use image::{DynamicImage, ImageFormat, ImageReader};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};
use std::io::Cursor;

/// The thumbnail's longest side, in pixels. A preview is at most a few dozen
/// cells wide; more pixels would only cost memory.
pub(crate) const MAX_PREVIEW_PX: u32 = 96;

/// Largest encoded image we try to decode for a preview. Attachments are
/// untrusted input, and decoding runs on the UI task when the message
/// arrives: a bigger image is shown as a file, not decoded.
pub(crate) const MAX_PREVIEW_BYTES: usize = 2 * 1024 * 1024;

/// Refuse images claiming more pixels than this before decoding them (a
/// decompression bomb is small on the wire and huge in memory; this also
/// bounds the decoding time).
const MAX_SOURCE_DIM: u32 = 4_096;

/// Rows of cells a preview takes in the chat.
pub(crate) const PREVIEW_ROWS: u16 = 8;

/// Columns a terminal-graphics preview may take.
pub(crate) const GRAPHIC_COLS: u16 = 40;

/// Largest side of the image handed to the graphics encoder: enough for
/// [`GRAPHIC_COLS`] × [`PREVIEW_ROWS`] cells at common font sizes.
const MAX_GRAPHIC_PX: u32 = 640;

/// Decodes PNG or JPEG bytes with size limits.
fn decode_image(bytes: &[u8]) -> Result<DynamicImage, PreviewError> {
    if bytes.len() > MAX_PREVIEW_BYTES {
        return Err(PreviewError::TooLarge);
    }
    let format = image::guess_format(bytes).map_err(|_| PreviewError::Decode)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(PreviewError::Decode);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_DIM);
    limits.max_image_height = Some(MAX_SOURCE_DIM);
    limits.max_alloc = Some(128 * 1024 * 1024);
    reader.limits(limits);
    reader.decode().map_err(|_| PreviewError::Decode)
}

/// What the terminal can show besides text.
#[derive(Clone, Debug)]
pub(crate) struct Graphics {
    picker: Picker,
}

impl Graphics {
    /// Asks the terminal (raw mode on, before anything else reads stdin).
    /// `None` when it has no graphics protocol: half blocks then.
    pub(crate) fn query() -> Option<Graphics> {
        let options = ratatui_image::picker::cap_parser::QueryStdioOptions {
            // Terminals answer at once; one that does not should not hold up
            // the start for long.
            timeout_ms: 500,
            ..Default::default()
        };
        let picker = Picker::from_query_stdio_with_options(options).ok()?;
        (picker.protocol_type() != ProtocolType::Halfblocks).then_some(Graphics { picker })
    }

    /// ratatui-image's own half blocks: to test the graphics path on
    /// `TestBackend`.
    #[cfg(test)]
    pub(crate) fn halfblocks() -> Graphics {
        Graphics {
            picker: Picker::halfblocks(),
        }
    }

    /// Encodes an image for this terminal, at most
    /// [`GRAPHIC_COLS`] × [`PREVIEW_ROWS`] cells.
    pub(crate) fn encode(&self, bytes: &[u8]) -> Option<Graphic> {
        let img = decode_image(bytes).ok()?;
        let img = img.thumbnail(MAX_GRAPHIC_PX, MAX_GRAPHIC_PX);
        let size = ratatui::layout::Size::new(GRAPHIC_COLS, PREVIEW_ROWS);
        self.picker
            .new_protocol(img, size, Resize::Fit(None))
            .ok()
            .map(Graphic)
    }
}

/// An image encoded for the terminal's graphics protocol, at a fixed size.
#[derive(Clone)]
pub(crate) struct Graphic(Protocol);

impl std::fmt::Debug for Graphic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.size();
        write!(f, "Graphic({}x{})", s.width, s.height)
    }
}

impl Graphic {
    /// Size in cells.
    pub(crate) fn size(&self) -> (u16, u16) {
        let s = self.0.size();
        (s.width, s.height)
    }

    /// Draws the whole image at the top left of `area`, if it fits.
    pub(crate) fn render(&self, buf: &mut Buffer, area: Rect) {
        use ratatui::widgets::Widget;
        Image::new(&self.0).render(area, buf);
    }
}

/// Why an image has no preview.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PreviewError {
    /// Over [`MAX_PREVIEW_BYTES`] or [`MAX_SOURCE_DIM`].
    #[error("image too large to preview")]
    TooLarge,
    /// Not a PNG or JPEG we can read.
    #[error("cannot decode image")]
    Decode,
}

/// A small RGB thumbnail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Preview {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Preview {
    /// Decodes PNG or JPEG bytes into a thumbnail.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Preview, PreviewError> {
        let img = decode_image(bytes)?;
        let thumb = img.thumbnail(MAX_PREVIEW_PX, MAX_PREVIEW_PX).to_rgb8();
        let (width, height) = thumb.dimensions();
        let rgb = thumb.pixels().map(|p| p.0).collect();
        Ok(Preview { width, height, rgb })
    }

    /// A preview from raw pixels (tests, generated images).
    #[cfg(test)]
    pub(crate) fn from_rgb(width: u32, height: u32, rgb: Vec<[u8; 3]>) -> Option<Preview> {
        (rgb.len() == (width as usize) * (height as usize)).then_some(Preview {
            width,
            height,
            rgb,
        })
    }

    /// The cell size a preview takes inside a box of `max_w` × `max_h` cells,
    /// keeping the aspect ratio (a cell holds one pixel across, two down).
    pub(crate) fn fit(&self, max_w: u16, max_h: u16) -> (u16, u16) {
        if self.width == 0 || self.height == 0 || max_w == 0 || max_h == 0 {
            return (0, 0);
        }
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        let (mw, mh) = (u64::from(max_w), u64::from(max_h) * 2);
        // Scale so that w' ≤ mw and h' ≤ mh with w'/h' = w/h.
        let (cw, ph) = if w * mh <= h * mw {
            ((w * mh / h).max(1), mh)
        } else {
            (mw, (h * mw / w).max(1))
        };
        let cw = u16::try_from(cw.min(mw)).unwrap_or(max_w);
        let ch = u16::try_from(ph.div_ceil(2).min(u64::from(max_h))).unwrap_or(max_h);
        (cw, ch)
    }

    fn sample(&self, x: u64, y: u64, w: u64, h: u64) -> Color {
        // Nearest neighbour: pixel centre of the target mapped to the source.
        let sx =
            ((2 * x + 1) * u64::from(self.width) / (2 * w.max(1))).min(u64::from(self.width) - 1);
        let sy =
            ((2 * y + 1) * u64::from(self.height) / (2 * h.max(1))).min(u64::from(self.height) - 1);
        let i = usize::try_from(sy * u64::from(self.width) + sx).unwrap_or(0);
        let [r, g, b] = self.rgb.get(i).copied().unwrap_or([0, 0, 0]);
        Color::Rgb(r, g, b)
    }

    /// Draws the rows `skip..` of the fitted preview into `area`, one image
    /// row pair per cell row. `full` is the size from [`Preview::fit`];
    /// `skip` lets a preview scrolled half out of view draw its lower part.
    pub(crate) fn render(&self, buf: &mut Buffer, area: Rect, full: (u16, u16), skip: u16) {
        let (cw, ch) = full;
        if cw == 0 || ch == 0 {
            return;
        }
        let (w, h) = (u64::from(cw), u64::from(ch) * 2);
        for row in 0..area.height {
            let cy = row.saturating_add(skip);
            if cy >= ch {
                break;
            }
            for col in 0..cw.min(area.width) {
                let top = self.sample(u64::from(col), u64::from(cy) * 2, w, h);
                let bottom = self.sample(u64::from(col), u64::from(cy) * 2 + 1, w, h);
                if let Some(cell) = buf.cell_mut((area.x + col, area.y + row)) {
                    cell.set_symbol("▀").set_fg(top).set_bg(bottom);
                }
            }
        }
    }
}

/// A PNG gradient, for the fake worker's demo attachment and for tests.
pub(crate) fn demo_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let r = u8::try_from(x * 255 / width.max(1)).unwrap_or(255);
        let g = u8::try_from(y * 255 / height.max(1)).unwrap_or(255);
        image::Rgb([r, g, 160])
    });
    let mut out = Cursor::new(Vec::new());
    match img.write_to(&mut out, ImageFormat::Png) {
        Ok(()) => out.into_inner(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_png_into_a_bounded_thumbnail() {
        let p = Preview::decode(&demo_png(400, 200)).unwrap();
        assert_eq!((p.width, p.height), (96, 48));
    }

    #[test]
    fn refuses_images_over_the_size_limits_before_decoding() {
        // Small on the wire, too wide to decode.
        let wide = demo_png(MAX_SOURCE_DIM + 1, 1);
        assert!(wide.len() < MAX_PREVIEW_BYTES);
        assert!(Preview::decode(&wide).is_err());
        assert!(Preview::decode(&demo_png(MAX_SOURCE_DIM, 1)).is_ok());
        let mut big = demo_png(8, 8);
        big.resize(MAX_PREVIEW_BYTES + 1, 0);
        assert!(matches!(Preview::decode(&big), Err(PreviewError::TooLarge)));
    }

    #[test]
    fn refuses_garbage_and_other_formats() {
        assert!(matches!(
            Preview::decode(b"not an image"),
            Err(PreviewError::Decode)
        ));
        assert!(matches!(
            Preview::decode(b"GIF89a...."),
            Err(PreviewError::Decode)
        ));
        assert!(Preview::decode(&[]).is_err());
    }

    #[test]
    fn fit_keeps_aspect_and_bounds() {
        let p = Preview::from_rgb(40, 20, vec![[0; 3]; 800]).unwrap();
        // 40 px wide, 20 px tall = 40 cells × 10 rows; boxed into 20 × 8.
        assert_eq!(p.fit(20, 8), (20, 5));
        assert_eq!(p.fit(200, 4), (16, 4));
        assert_eq!(p.fit(0, 4), (0, 0));
        assert_eq!(p.fit(1, 1), (1, 1));
    }

    #[test]
    fn half_blocks_carry_two_pixels_per_cell() {
        // 1 px wide, 2 px tall: red over blue.
        let p = Preview::from_rgb(1, 2, vec![[255, 0, 0], [0, 0, 255]]).unwrap();
        let area = Rect::new(0, 0, 1, 1);
        let mut buf = Buffer::empty(area);
        p.render(&mut buf, area, p.fit(1, 1), 0);
        let cell = &buf[(0, 0)];
        assert_eq!(cell.symbol(), "▀");
        assert_eq!(cell.fg, Color::Rgb(255, 0, 0));
        assert_eq!(cell.bg, Color::Rgb(0, 0, 255));
    }

    #[test]
    fn graphics_encode_within_the_preview_box() {
        let g = Graphics::halfblocks().encode(&demo_png(400, 100)).unwrap();
        let (w, h) = g.size();
        assert!(
            w <= GRAPHIC_COLS && h <= PREVIEW_ROWS && w > 0 && h > 0,
            "{w}x{h}"
        );
        assert!(Graphics::halfblocks().encode(b"junk").is_none());
    }

    #[test]
    fn render_never_writes_outside_its_area() {
        let p = Preview::decode(&demo_png(50, 50)).unwrap();
        let mut buf = Buffer::empty(Rect::new(0, 0, 5, 5));
        p.render(&mut buf, Rect::new(3, 3, 10, 10), (10, 10), 2);
    }
}
