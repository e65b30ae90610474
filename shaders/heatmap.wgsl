// Heatmap pooling: one piece of whole tensor rows (original x, dequantized y) pooled into the cells of a
// heatmap grid, the GPU side of src/quant/heatmap.ts (poolPiece), which defines the grid, the Cell fields and
// the modes drawn from them, and is this kernel's CPU reference: same f32 operations in the same order.
//
// One invocation per (cell row touched by the piece, cell column): it walks its cell's weights that lie in
// the piece, row by row, and writes one Cell. Sums are sequential f32 sums in row-major order; the extremes
// keep the first of equal magnitudes. The CPU folds the pieces' cells together (HeatmapAccumulator).
//
// NaN and +-Inf are recognised from their bits (WGSL arithmetic may assume finite values) and only counted.
// A GPU that flushes subnormal floats to zero (SwiftShader does) can differ from the CPU reference by less
// than 2^-126 in a cell holding such values: invisible in a heatmap, so not worked around here.

// Binding 0: the piece's original values, params.rows rows of params.cols, as float32 bit patterns.
@group(0) @binding(0) var<storage, read> xs: array<u32>;
// Binding 1: the dequantized values, same layout (the weights alone: x again).
@group(0) @binding(1) var<storage, read> ys: array<u32>;
// Binding 2: the piece's cells, params.cellRows x params.gridCols, row-major (read back by the CPU).
@group(0) @binding(2) var<storage, read_write> cells: array<Cell>;
// Binding 3: the piece and the grid.
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 64u;

struct Params {
  cols: u32,       // weights per tensor row
  firstRow: u32,   // tensor row of the piece's first row
  rows: u32,       // rows in the piece
  row0: u32,       // the view: first tensor row,
  col0: u32,       //   first column,
  viewRows: u32,   //   rows
  viewCols: u32,   //   and columns
  gridRows: u32,   // cells down the view
  gridCols: u32,   // cells across
  firstCell: u32,  // the first cell row the piece touches
  cellRows: u32,   // cell rows the piece touches
}

// Word order = src/quant/heatmap.ts CELL (10 words).
struct Cell {
  count: u32,
  nonFinite: u32,
  sumX: f32,
  sumAbsX: f32,
  sumE: f32,
  sumAbsE: f32,
  extX: f32,
  maxAbsE: f32,
  extE: f32,
  maxRel: f32,
}

fn cell_start(i: u32, total: u32, n: u32) -> u32 {
  return (i * total) / n;
}

fn is_finite_bits(bits: u32) -> bool {
  return (bits & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn poolPiece(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let index = linear_workgroup(wid, nwg) * WORKGROUP_SIZE + lid;
  if (index >= params.cellRows * params.gridCols) {
    return;
  }
  let cellRow = params.firstCell + index / params.gridCols;
  let cellCol = index % params.gridCols;
  let rowA = max(params.firstRow, params.row0);
  let rowB = min(params.firstRow + params.rows, params.row0 + params.viewRows);
  let r0 = max(params.row0 + cell_start(cellRow, params.viewRows, params.gridRows), rowA);
  let r1 = min(params.row0 + cell_start(cellRow + 1u, params.viewRows, params.gridRows), rowB);
  let c0 = params.col0 + cell_start(cellCol, params.viewCols, params.gridCols);
  let c1 = params.col0 + cell_start(cellCol + 1u, params.viewCols, params.gridCols);

  var cell = Cell(0u, 0u, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (var r = r0; r < r1; r++) {
    let base = (r - params.firstRow) * params.cols;
    for (var c = c0; c < c1; c++) {
      let xb = xs[base + c];
      let yb = ys[base + c];
      if (!is_finite_bits(xb) || !is_finite_bits(yb)) {
        cell.nonFinite += 1u;
        continue;
      }
      let x = bitcast<f32>(xb);
      let e = bitcast<f32>(yb) - x;
      let ax = abs(x);
      let ae = abs(e);
      cell.count += 1u;
      cell.sumX += x;
      cell.sumAbsX += ax;
      cell.sumE += e;
      cell.sumAbsE += ae;
      if (ax > abs(cell.extX)) {
        cell.extX = x;
      }
      if (ae > cell.maxAbsE) {
        cell.maxAbsE = ae;
        cell.extE = e;
      }
      if (ax > 0.0) {
        cell.maxRel = max(cell.maxRel, ae / ax);
      }
    }
  }
  cells[index] = cell;
}
