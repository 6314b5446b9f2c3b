// Multi-page TIFF and BigTIFF movies through libtiff: one page per frame (per channel), strips or
// tiles, any libtiff compression; 8/16/32-bit integer and 32/64-bit float pixels. Understands
// ScanImage (frame rate and channel count from its ImageDescription/Software text) and ImageJ
// hyperstacks (channels=, finterval=, and the single-IFD contiguous layout ImageJ writes for
// stacks over 4 GB).
#pragma once

#include <memory>
#include <string>

#include "engine/io/movie.h"

namespace rtnmf::io {

// Opens a TIFF movie (see MovieReader for the error contract). Walks the directory chain once
// (allocates); a chain that points past the end of the file marks the first unreachable frame as
// damaged. Throws MovieError naming the file.
std::unique_ptr<MovieReader> open_tiff_movie(const std::string& path, const MovieOptions& options);

}  // namespace rtnmf::io
