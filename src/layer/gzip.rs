//! gzip made of fixed-size, independently compressed blocks, so that the output depends only
//! on the input bytes, the level and the block size.
//!
//! Each block of input is deflated by a fresh compressor and ended with a sync flush, which
//! byte-aligns it, and the raw deflate streams are joined into one gzip member, as pigz does.
//! A block never sees its neighbours, so how callers split their writes, and in what order
//! blocks are compressed, cannot change a byte: the blocks can be compressed in parallel and the
//! digest stays the same on 1 core or 64. flate2's miniz_oxide backend is used because its output
//! is a pure function of its input (zlib-rs and zlib-ng vary with CPU features and write sizes).

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

/// The gzip level used unless `--compression-level` says otherwise.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Input bytes per independently compressed block. Changing it changes every digest.
pub const BLOCK_SIZE: usize = 128 * 1024;

/// gzip header: magic, deflate, no flags, mtime 0, extra flags 0, OS 255 ("unknown"), so the
/// header is the same on every operating system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// A [`Write`] that gzips into `inner` in fixed-size blocks.
pub struct BlockGzipWriter<W: Write> {
    inner: W,
    level: u32,
    pending: Vec<u8>,
    crc: crc32fast::Hasher,
    length: u64,
    header_written: bool,
}

impl<W: Write> BlockGzipWriter<W> {
    pub fn new(inner: W, level: u32) -> Self {
        BlockGzipWriter {
            inner,
            level: level.min(9),
            pending: Vec::with_capacity(BLOCK_SIZE * 2),
            crc: crc32fast::Hasher::new(),
            length: 0,
            header_written: false,
        }
    }

    /// Compresses the last block, writes the gzip trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        self.drain_full_blocks()?;
        let last = std::mem::take(&mut self.pending);
        let compressed = compress_block(&last, self.level, true)?;
        self.inner.write_all(&compressed)?;
        self.inner
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        self.inner.write_all(&(self.length as u32).to_le_bytes())?;
        Ok(self.inner)
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Compresses every full block except the last, which `finish` must end the stream with.
    fn drain_full_blocks(&mut self) -> io::Result<()> {
        let mut start = 0;
        while self.pending.len() - start > BLOCK_SIZE {
            self.write_header()?;
            let block = &self.pending[start..start + BLOCK_SIZE];
            let compressed = compress_block(block, self.level, false)?;
            self.inner.write_all(&compressed)?;
            start += BLOCK_SIZE;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

impl<W: Write> Write for BlockGzipWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.crc.update(bytes);
        self.length += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > BLOCK_SIZE * 2 {
            self.drain_full_blocks()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Deflates `block` as a raw deflate stream; a non-final block ends with a sync flush so the
/// next block's stream can follow it directly.
pub fn compress_block(block: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut compressor = Compress::new(Compression::new(level), false);
    // Room for incompressible input (stored blocks add 5 bytes per 64 KiB) so that one call
    // normally finishes the block; the loop below only guards against surprises.
    let mut output = Vec::with_capacity(block.len() + block.len() / 8 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = compressor.total_in() as usize;
        let status = compressor
            .compress_vec(&block[consumed..], &mut output, flush)
            .map_err(io::Error::other)?;
        let done = compressor.total_in() as usize == block.len()
            && output.len() < output.capacity()
            && (!last || status == Status::StreamEnd);
        if done {
            return Ok(output);
        }
        output.reserve(output.capacity().max(64 * 1024));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut writer = BlockGzipWriter::new(Vec::new(), DEFAULT_COMPRESSION_LEVEL);
        for chunk in data.chunks(write_size.max(1)) {
            writer.write_all(chunk).unwrap();
        }
        writer.finish().unwrap()
    }

    fn sample(length: usize) -> Vec<u8> {
        // Text-like, compressible, but not periodic within a block.
        let mut state = 0x2545_f491_u32;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let alphabet = b"abcdefgh ijklmnop\n{}();";
                alphabet[state as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn output_decompresses_to_input() {
        for length in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 17,
        ] {
            let data = sample(length);
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&gzip(&data, 4096)[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert!(decoded == data, "length {length} did not round-trip");
        }
    }

    #[test]
    fn output_ignores_write_sizes() {
        let data = sample(5 * BLOCK_SIZE + 123);
        let reference = gzip(&data, data.len());
        for write_size in [1, 7, 512, 4096, BLOCK_SIZE, BLOCK_SIZE + 1] {
            assert_eq!(
                gzip(&data, write_size),
                reference,
                "write size {write_size}"
            );
        }
    }

    #[test]
    fn header_has_no_time_or_name() {
        let output = gzip(b"x", 1);
        assert_eq!(output[..10], HEADER);
    }
}
