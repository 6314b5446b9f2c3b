// Rigid registration of imaging frames to a template by FFT phase correlation (FFTW, float).
//
//   RigidRegistration reg;
//   reg.init(height, width, {});            // plans and buffers: allocates, not thread-safe wrt
//                                           // other FFTW planning (guarded by a global mutex)
//   reg.set_template(tmpl);                 // allocates nothing after init
//   Shift s = reg.estimate(frame);          // hot path: no allocation
//   reg.apply(frame, s, corrected);         // corrected(y, x) = frame(y + s.dy, x + s.dx)
//   reg.apply_in_place(frame, s);           // the same, overwriting the frame
//   reg.blend_template(frame, w);           // running template (reduced copies only), then
//   reg.refresh_template();                 // its spectra when wanted
//
// Conventions: frames are row-major height x width (pixel = row * width + column). A shift (dy, dx)
// means the frame is the template displaced by dy rows and dx columns:
// frame(y, x) ~ template(y - dy, x - dx). Sub-pixel: the normalised cross-power spectrum is
// multiplied by a Gaussian (suite2p's trick, sigma ~1.15 px in space), which turns the correlation
// peak into a Gaussian blob whose centre a log-parabola through 3 points per axis recovers.
//
// Two stages for large frames, so that the cost does not grow with the frame: a coarse estimate
// on the frame binned `downsample` x `downsample` (the whole field of view in a window of at most
// max_window binned pixels per side: robust to large shifts and to empty regions), then a
// full-resolution estimate on a central crop of refine_window pixels that starts from the coarse
// shift rounded to whole pixels (the crop is read displaced by it), searched only a few pixels
// around it. The sub-pixel value comes from the full-resolution stage, so binning costs no
// accuracy. The template is kept only in those two reduced forms (binned window and crop), so
// updating it per frame is cheap. Frames no larger than max_window use one full-resolution stage.
// Deterministic: plans are made with FFTW_ESTIMATE, so every run computes bit-identical shifts;
// for power-of-two windows of 32..256 per side FFTW rebuilds plans measured once and compiled in
// (engine/dsp/fftw_wisdom.inc) instead of estimating them, equally repeatable and faster.
#pragma once

#include <cstdint>
#include <vector>

namespace rtnmf::dsp {

struct Shift {
  float dy = 0;
  float dx = 0;
  float peak = 0;  // height of the normalised correlation peak (quality, 0..1)
};

struct RegistrationOptions {
  // Largest shift searched, in full-resolution pixels (0 = a tenth of the frame's longer side,
  // suite2p's maxregshift; never more than about half the coarse window's span).
  std::uint32_t max_shift = 0;
  // Side of the coarse correlation window, in binned pixels, rounded down to a size of the form
  // 2^a 3^b 5^c (FFTW plans for sizes with larger prime factors may allocate per call). 0 = the
  // whole (binned) frame. 64: the coarse stage only has to land within the refinement's search
  // (binning + 2 px), and a 64 x 64 pair of FFTs costs a quarter of 128 x 128: motion
  // correction's median per frame in a 512 x 512 replay 393 -> 238 us (bin 8 instead of 4),
  // shifts identical to 0.01 px rms on moving 512 x 512, 256 x 256 two-photon and one-photon
  // simulator movies (session 13).
  std::uint32_t max_window = 64;
  // Binning of the coarse stage (a power of two; 0 = the smallest that fits the frame's longer
  // side into max_window, 1 = none).
  std::uint32_t downsample = 0;
  // Side of the full-resolution crop that refines a binned estimate (rounded down as max_window;
  // a frame side below it is used whole; 0 = no refinement: the coarse shift times the binning
  // is the answer).
  std::uint32_t refine_window = 128;
  // Gaussian smoothing of the correlation in pixels of each stage (suite2p smooth_sigma).
  float smooth_sigma = 1.15f;
  // Fraction of each border tapered to the mean before the FFT (kills edge wrap-around).
  float taper_fraction = 0.1f;
};

// Whether this FFTW build accepted the compiled-in plans (false after an FFTW upgrade: planning
// then estimates as before; regenerate the file with tools/fftw_wisdom/fftw_wisdom_gen).
bool registration_wisdom_loaded();

class RigidRegistration {
 public:
  RigidRegistration() = default;
  ~RigidRegistration();
  RigidRegistration(const RigidRegistration&) = delete;
  RigidRegistration& operator=(const RigidRegistration&) = delete;

  // Sizes buffers and creates FFTW plans for height x width frames. Allocates. Throws
  // std::invalid_argument for a shape smaller than 4 x 4 or a downsample that is not a power of
  // two or leaves fewer than 4 binned pixels. Call before any other method, from any one thread.
  void init(std::uint32_t height, std::uint32_t width, const RegistrationOptions& options);

  // Sets the reference image (height*width floats): its reduced copies and their spectra. Does
  // not allocate.
  void set_template(const float* tmpl);
  bool has_template() const { return has_template_; }
  // Moves the reduced template copies towards `frame` (a registered frame):
  // t += weight * (reduce(frame) - t). The estimate keeps using the spectra of the last
  // set_template/refresh_template until refresh_template(). Does not allocate.
  void blend_template(const float* frame, float weight);
  // Recomputes the template spectra from the reduced copies. Does not allocate.
  void refresh_template();

  // Estimates the displacement of `frame` relative to the template. Does not allocate. Returns a
  // zero shift with peak 0 before set_template().
  Shift estimate(const float* frame);

  // Writes the frame moved back onto the template grid: out(y, x) = frame(y + dy, x + dx) by
  // bilinear interpolation (separable: whole-pixel parts are plain offsets, each source row is
  // interpolated horizontally once), replicating border pixels. Does not allocate.
  // `out` != `frame`.
  void apply(const float* frame, const Shift& shift, float* out);
  // The same in place: rows are visited in the direction that reads every source row before it
  // is overwritten. Does not allocate.
  void apply_in_place(float* frame, const Shift& shift);
  // estimate + apply_in_place + blend_template(frame, weight) (weight 0: no blend) in one pass
  // over the frame: the binned copy for the template is summed while the rows are written.
  // Returns the shift. Does not allocate. What the motion-correction stage calls per frame.
  Shift correct(float* frame, float weight);
  // correct()'s second half with a given shift (e.g. the previous frame's, for a frame whose own
  // estimate was rejected): apply_in_place + blend_template in one pass. Does not allocate.
  void apply_and_blend(float* frame, const Shift& shift, float weight);
  // The template's start from the first `count` frames of a stream, called with index 0, 1, ...
  // count - 1: frame 0 becomes the template; each later one is corrected against the mean of
  // those before it, blended in with weight 1 / (index + 1), and the spectra are refreshed after
  // 2, 4, 8, 16 ... frames and after the last. (Registering them all to frame 0 left a noisy
  // one-photon 96 x 96 movie's shifts 0.62 px rms from the truth over 300 frames, 0.58 this way:
  // numpy prototype.) Returns the shift (zero for frame 0). Does not allocate.
  Shift start_template(float* frame, std::uint32_t index, std::uint32_t count);

  // Reads the template copies, FFT buffers and scratch the next correct() uses into the caches.
  // Changes nothing; the return value only keeps the reads. Between frames.
  std::uint32_t warm() const;

  std::uint32_t height() const { return height_; }
  std::uint32_t width() const { return width_; }
  std::uint32_t downsample() const { return bin_; }
  bool refines() const { return refine_; }

 private:
  // One phase-correlation window: taper, spectral Gaussian, FFTW plans and buffers.
  struct Correlator {
    std::uint32_t h = 0, w = 0;
    double gauss_sum = 1;
    std::vector<float> taper;     // h x w
    std::vector<float> gauss;     // h x (w/2+1) spectral weights
    float* real = nullptr;        // fftwf_malloc'd, h x w
    void* spec = nullptr;         // fftwf_complex, h x (w/2+1)
    void* tmpl_spec = nullptr;    // conj(FFT(template window))
    void* fwd = nullptr;          // fftwf_plan
    void* inv = nullptr;
    void init(std::uint32_t h, std::uint32_t w, const RegistrationOptions& o);
    std::uint32_t warm() const;
    void release();
    // Copies an h x w image (row stride `stride`) into the FFT buffer, mean-subtracted and
    // tapered, and transforms it.
    void load(const float* src, std::size_t stride);
    void set_template(const float* src, std::size_t stride);
    // Peak of the smoothed phase correlation within |dy|, |dx| <= m (window pixels).
    Shift estimate(const float* src, std::size_t stride, int m);
  };
  // Bins the coarse window of `frame` (sums of bin_ x bin_ blocks) into `dst` (cw.h x cw.w).
  void bin_window(const float* frame, float* dst);
  // dst = src shifted (src may be dst); bin_out != nullptr also receives the coarse window of dst
  // binned (as bin_window would give it, summed in row-visiting order).
  void shift_rows(const float* src, float* dst, const Shift& shift, float* bin_out);
  void blend_reduced(const float* frame, const float* binned, float weight);
  void release();

  std::uint32_t height_ = 0, width_ = 0;
  std::uint32_t bin_ = 1;
  std::uint32_t off_y_ = 0, off_x_ = 0;    // coarse window origin, binned pixels
  std::uint32_t roff_y_ = 0, roff_x_ = 0;  // refinement crop origin, full resolution
  std::uint32_t max_shift_ = 0;            // coarse search, binned pixels
  bool refine_ = false;
  bool has_template_ = false;
  Correlator coarse_, fine_;
  std::vector<float> binned_;              // coarse window of the current frame
  std::vector<float> tmpl_coarse_, tmpl_fine_;  // reduced template copies
  std::vector<float> hrow_[2];             // apply(): horizontally interpolated source rows
  std::vector<std::int32_t> col0_, col1_;  // apply(): clamped column taps
};

// Bidirectional (resonant) scanning writes every other line in the opposite direction; a
// mistimed turnaround displaces those lines sideways against the others (the comb artefact
// suite2p's do_bidiphase removes). Convention: the odd rows (1, 3, ...) are the even rows'
// image displaced by `offset` columns: odd(x) ~ image(x - offset).
//
// The offset in whole pixels (|offset| <= max_offset) that best aligns each odd row with the mean
// of the even rows around it: normalised correlation of their horizontal differences over the
// frame (edges, not the smooth background), ties to the smaller |offset|; a scaled frame (a sum
// of frames) gives the same answer. Give it a mean (or sum) of several frames: one dim frame is mostly noise (a simulated dim two-photon movie: wrong from
// one frame, right from the mean of five). 0 for frames under 4 rows or 2 * max_offset + 3
// columns. Does not allocate.
int estimate_bidi_phase(const float* frame, std::uint32_t height, std::uint32_t width, int max_offset);
// Moves the odd rows of `frame` back by `offset` columns in place (odd(x) <- odd(x + offset)),
// replicating the edge pixel into the columns it uncovers. Does not allocate.
void correct_bidi_phase(float* frame, std::uint32_t height, std::uint32_t width, int offset);

}  // namespace rtnmf::dsp
