#include "engine/nmf/ring_background.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/nmf/batch_nmf.h"

namespace rtnmf::nmf {

std::vector<std::pair<int, int>> ring_offsets(int radius, int points) {
  std::vector<std::pair<int, int>> out;
  points = std::max(points, 4);
  for (int i = 0; i < points; ++i) {
    const double a = 2.0 * M_PI * i / points;
    const std::pair<int, int> o{static_cast<int>(std::lround(radius * std::sin(a))),
                                static_cast<int>(std::lround(radius * std::cos(a)))};
    if (std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  }
  return out;
}

int default_ring_radius(float neuron_radius) {
  return std::max(3, static_cast<int>(std::lround(1.75f * neuron_radius)));
}

RingBackground fit_ring_background(Eigen::Ref<const Eigen::MatrixXf> x, std::uint32_t height,
                                   std::uint32_t width, int radius, int points, float ridge,
                                   int threads, int max_frames) {
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  const Eigen::Index P = static_cast<Eigen::Index>(H) * W;
  if (x.rows() != P || x.cols() < 2) {
    throw std::invalid_argument("ring background: data has " + std::to_string(x.rows()) + " x " +
                                std::to_string(x.cols()) + " values, need " + std::to_string(P) +
                                " pixels x >= 2 frames");
  }
  RingBackground rb;
  rb.height = height;
  rb.width = width;
  rb.radius = radius;
  rb.b0 = x.rowwise().mean();
  // Centred pixel traces, contiguous per pixel, of every stride-th frame (~max_frames of them;
  // ~200 are plenty for ~24 weights).
  const Eigen::Index stride = std::max<Eigen::Index>(1, x.cols() / std::max(2, max_frames));
  const Eigen::Index T = (x.cols() + stride - 1) / stride;
  Eigen::MatrixXf xt(T, P);
  for (Eigen::Index t = 0; t < T; ++t) xt.row(t) = (x.col(t * stride) - rb.b0).transpose();
  const std::vector<std::pair<int, int>> offs = ring_offsets(radius, points);
  // Rows in fixed blocks over `threads`, each row's weights in its own list: the same W for any
  // thread count.
  std::vector<std::vector<Eigen::Triplet<float>>> rows(static_cast<std::size_t>(H));
  detail::parallel_blocks(threads, H, [&](Eigen::Index r0, Eigen::Index r1) {
    std::vector<Eigen::Index> ring;
    Eigen::MatrixXf m(T, static_cast<Eigen::Index>(offs.size()));
    for (int py = static_cast<int>(r0); py < static_cast<int>(r1); ++py) {
      std::vector<Eigen::Triplet<float>>& trip = rows[static_cast<std::size_t>(py)];
      trip.reserve(static_cast<std::size_t>(W) * offs.size());
      for (int px = 0; px < W; ++px) {
        ring.clear();
        for (const auto& o : offs) {
          const int y = py + o.first, xx = px + o.second;
          if (y < 0 || xx < 0 || y >= H || xx >= W) continue;
          ring.push_back(static_cast<Eigen::Index>(y) * W + xx);
        }
        const Eigen::Index p = static_cast<Eigen::Index>(py) * W + px;
        const Eigen::Index n = static_cast<Eigen::Index>(ring.size());
        if (n == 0) continue;
        for (Eigen::Index i = 0; i < n; ++i) m.col(i) = xt.col(ring[static_cast<std::size_t>(i)]);
        Eigen::MatrixXf g = m.leftCols(n).transpose() * m.leftCols(n);
        Eigen::VectorXf rhs = m.leftCols(n).transpose() * xt.col(p);
        const float lambda = std::max(ridge * g.trace() / static_cast<float>(n), 1e-12f);
        g.diagonal().array() += lambda;
        Eigen::VectorXf wv = g.llt().solve(rhs);
        for (Eigen::Index i = 0; i < n; ++i) {
          if (wv(i) != 0) trip.emplace_back(static_cast<int>(p), static_cast<int>(ring[static_cast<std::size_t>(i)]), wv(i));
        }
      }
    }
  });
  std::vector<Eigen::Triplet<float>> trip;
  trip.reserve(static_cast<std::size_t>(P) * offs.size());
  for (const auto& r : rows) trip.insert(trip.end(), r.begin(), r.end());
  rb.w.resize(P, P);
  rb.w.setFromTriplets(trip.begin(), trip.end());
  rb.w.makeCompressed();
  return rb;
}

void ring_background_frame(const RingBackground& rb, const float* x, float* out, float* scratch) {
  const Eigen::Index P = rb.b0.size();
  Eigen::Map<const Eigen::VectorXf> xv(x, P);
  Eigen::Map<Eigen::VectorXf> s(scratch, P), o(out, P);
  s = xv - rb.b0;
  o.noalias() = rb.w * s;
  o += rb.b0;
}

void ring_filter_frame(const RingBackground& rb, const float* y, float* z, float* scratch) {
  const Eigen::Index P = rb.b0.size();
  Eigen::Map<const Eigen::VectorXf> yv(y, P);
  Eigen::Map<Eigen::VectorXf> s(scratch, P), zv(z, P);
  s = yv - rb.b0;
  zv.noalias() = rb.w * s;
  zv = s - zv;
}

Eigen::SparseMatrix<float> ring_filter_footprints(const RingBackground& rb,
                                                  const Eigen::SparseMatrix<float>& a) {
  const Eigen::SparseMatrix<float> w = rb.w;  // column-major copy for the product
  Eigen::SparseMatrix<float> wa = w * a;
  Eigen::SparseMatrix<float> out = a - wa;
  out.prune(0.0f, 0.0f);
  out.makeCompressed();
  return out;
}

}  // namespace rtnmf::nmf
