// Rank selection: linkage, cophenetic correlation, and the recommendations on planted data.
#include "engine/nmf/rank_selection.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/nmf/nmf_test_data.h"

namespace rtnmf::nmf {
namespace {

// Naive O(n³) UPGMA: repeatedly merge the closest pair of clusters by mean pairwise distance.
Eigen::MatrixXd naive_upgma_cophenetic(const Eigen::MatrixXd& d) {
  const int n = static_cast<int>(d.rows());
  std::vector<std::vector<int>> clusters;
  for (int i = 0; i < n; ++i) clusters.push_back({i});
  Eigen::MatrixXd coph = Eigen::MatrixXd::Zero(n, n);
  while (clusters.size() > 1) {
    double best = 1e300;
    size_t ba = 0, bb = 1;
    for (size_t a = 0; a < clusters.size(); ++a)
      for (size_t b = a + 1; b < clusters.size(); ++b) {
        double s = 0;
        for (int i : clusters[a])
          for (int j : clusters[b]) s += d(i, j);
        s /= static_cast<double>(clusters[a].size() * clusters[b].size());
        if (s < best) {
          best = s;
          ba = a;
          bb = b;
        }
      }
    for (int i : clusters[ba])
      for (int j : clusters[bb]) coph(i, j) = coph(j, i) = best;
    clusters[ba].insert(clusters[ba].end(), clusters[bb].begin(), clusters[bb].end());
    clusters.erase(clusters.begin() + static_cast<long>(bb));
  }
  return coph;
}

TEST(AverageLinkage, MatchesNaiveUpgmaOnRandomDistances) {
  for (int seed = 1; seed <= 5; ++seed) {
    const int n = 12 + seed;
    Eigen::MatrixXf pts = testdata::uniform(3, n, seed);
    Eigen::MatrixXd d(n, n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) d(i, j) = (pts.col(i) - pts.col(j)).cast<double>().norm();
    std::vector<Merge> merges = average_linkage(d);
    ASSERT_EQ(merges.size(), static_cast<size_t>(n - 1));
    for (size_t i = 1; i < merges.size(); ++i) EXPECT_GE(merges[i].height, merges[i - 1].height);
    EXPECT_EQ(merges.back().size, n);
    EXPECT_LT((cophenetic_distances(merges, n) - naive_upgma_cophenetic(d)).cwiseAbs().maxCoeff(),
              1e-12);
  }
}

TEST(Consensus, CountsAgreementAcrossRuns) {
  std::vector<std::vector<int>> labels = {{0, 0, 1, 1}, {1, 1, 0, 0}, {0, 1, 1, 1}, {2, 2, 2, 0}};
  Eigen::MatrixXf c = consensus_matrix(labels);
  EXPECT_FLOAT_EQ(c(0, 1), 0.75f);
  EXPECT_FLOAT_EQ(c(2, 3), 0.75f);
  EXPECT_FLOAT_EQ(c(0, 3), 0.f);
  EXPECT_FLOAT_EQ(c(1, 2), 0.5f);
  EXPECT_FLOAT_EQ(c(3, 3), 1.f);
  // A crisp block consensus has cophenetic correlation 1; a scrambled one less.
  EXPECT_NEAR(cophenetic_correlation(consensus_matrix({{0, 0, 0, 1, 1, 1, 2, 2}})), 1.0, 1e-12);
  EXPECT_LT(cophenetic_correlation(c), 0.999);
}

// Three well-separated groups of samples on disjoint features, each sample its group's profile
// with strong multiplicative noise, so there is no preferred way to split a group further.
Eigen::MatrixXf clustered(std::uint64_t seed, int k = 3) {
  const int features = 10 * k, per = 20;
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(features, per * k);
  Eigen::MatrixXf noise = testdata::uniform(features, per * k, seed + 1);
  Eigen::MatrixXf scale = testdata::uniform(1, per * k, seed + 3);
  for (int j = 0; j < per * k; ++j) {
    const int c = j % k;
    x.block(c * 10, j, 10, 1).array() =
        (0.5f + scale(0, j)) * (1.f + noise.block(c * 10, j, 10, 1).array());
  }
  x += 0.05f * testdata::uniform(features, per * k, seed + 2);
  return x;
}

TEST(RankSelection, CopheneticIsNearOneAtThePlantedRankAndLowerAbove) {
  RankSelectionOptions o;
  o.min_rank = 2;
  o.max_rank = 5;
  o.runs = 12;
  o.seed = 7;
  o.nmf.max_iter = 200;
  RankSelection s = select_rank(clustered(3), o);
  ASSERT_EQ(s.rows.size(), 4u);
  const RankRow& at3 = s.rows[1];
  EXPECT_EQ(at3.rank, 3);
  EXPECT_GE(at3.cophenetic, 0.999);
  EXPECT_GE(at3.dispersion, 0.99);
  EXPECT_LT(s.rows[0].cophenetic, at3.cophenetic);
  // Above the planted rank a group is split differently from run to run: the consensus blurs.
  EXPECT_LE(s.rows[2].cophenetic, at3.cophenetic);
  EXPECT_LT(s.rows[3].cophenetic, at3.cophenetic - 5e-4);
  EXPECT_LT(s.rows[2].dispersion, at3.dispersion - 0.02);
  EXPECT_LT(s.rows[3].dispersion, s.rows[2].dispersion);
  EXPECT_EQ(s.recommended_by_cophenetic, 3);
}

// The recommendation, not just the table: over several data seeds and planted ranks 3 and 4 the
// rule lands on the planted rank although the cophenetic coefficient stays near 1 above it.
TEST(RankSelection, RecommendsThePlantedRankAcrossSeedsOfWellSeparatedData) {
  for (int k : {3, 4}) {
    for (std::uint64_t seed : {3u, 11u, 19u, 27u}) {
      RankSelectionOptions o;
      o.min_rank = 2;
      o.max_rank = k + 2;
      o.runs = 12;
      o.seed = 7 + seed;
      o.nmf.max_iter = 200;
      RankSelection s = select_rank(clustered(seed, k), o);
      std::string table;
      for (const RankRow& r : s.rows)
        table += " K" + std::to_string(r.rank) + " coph " + std::to_string(r.cophenetic) +
                 " disp " + std::to_string(r.dispersion) + ";";
      EXPECT_EQ(s.recommended_by_cophenetic, k) << "seed " << seed << ":" << table;
    }
  }
}

TEST(RankSelection, RecommendsTheSmallestRankReachingTheVafThreshold) {
  testdata::Planted p = testdata::planted(20, 4, 300, 9);
  RankSelectionOptions o;
  o.min_rank = 1;
  o.max_rank = 6;
  o.runs = 2;
  o.vaf_threshold = 0.999;
  RankSelection s = select_rank(p.x, o);
  ASSERT_EQ(s.rows.size(), 6u);
  for (size_t i = 1; i < s.rows.size(); ++i)
    EXPECT_GE(s.rows[i].vaf, s.rows[i - 1].vaf - 1e-3);
  EXPECT_LT(s.rows[2].vaf, 0.999);
  EXPECT_EQ(s.recommended_by_vaf, 4);
}

TEST(RankSelection, RejectsAnEmptyRange) {
  RankSelectionOptions o;
  o.min_rank = 5;
  o.max_rank = 3;
  EXPECT_THROW(select_rank(Eigen::MatrixXf::Ones(4, 4), o), std::invalid_argument);
}

}  // namespace
}  // namespace rtnmf::nmf
