// Seeded synthetic data for the nmf tests: planted non-negative factors, noise, clusters.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <random>

namespace rtnmf::nmf::testdata {

// Uniform [0,1) matrix from a seeded engine (deterministic across runs of one build).
inline Eigen::MatrixXf uniform(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Eigen::MatrixXf m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = u(rng);
  return m;
}

// Sparse-ish non-negative matrix: each entry is uniform with probability `density`, else 0.
inline Eigen::MatrixXf sparse_uniform(Eigen::Index rows, Eigen::Index cols, float density,
                                      std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Eigen::MatrixXf m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) {
      const float keep = u(rng);
      const float v = u(rng);
      m(i, j) = keep < density ? v : 0.f;
    }
  return m;
}

// Gaussian noise with standard deviation sigma.
inline Eigen::MatrixXf gaussian(Eigen::Index rows, Eigen::Index cols, float sigma,
                                std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.f, sigma);
  Eigen::MatrixXf m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = n(rng);
  return m;
}

// Planted X = W H with W features×K having a few zeros per column (identifiable: each column of
// W has entries no other column has) and H sparse-ish.
struct Planted {
  Eigen::MatrixXf w, h, x;
};

inline Planted planted(Eigen::Index features, Eigen::Index k, Eigen::Index samples,
                       std::uint64_t seed) {
  Planted p;
  p.w = sparse_uniform(features, k, 0.5f, seed);
  // Guarantee a private feature per component so the factorisation is unique up to scale.
  for (Eigen::Index c = 0; c < k; ++c) {
    for (Eigen::Index c2 = 0; c2 < k; ++c2) p.w(c % features, c2) = 0.f;
    p.w(c % features, c) = 1.f;
  }
  p.h = sparse_uniform(k, samples, 0.5f, seed + 1);
  for (Eigen::Index c = 0; c < k; ++c) {
    for (Eigen::Index c2 = 0; c2 < k; ++c2) p.h(c2, c % samples) = 0.f;
    p.h(c, c % samples) = 1.f;
  }
  p.x = p.w * p.h;
  return p;
}

}  // namespace rtnmf::nmf::testdata
