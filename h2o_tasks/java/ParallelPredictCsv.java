import au.com.bytecode.opencsv.CSVParser;
import hex.ModelCategory;
import hex.genmodel.CategoricalEncoding;
import hex.genmodel.ConverterFactoryProvidingModel;
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;
import hex.genmodel.algos.drf.DrfMojoModel;
import hex.genmodel.algos.gbm.GbmMojoModel;
import hex.genmodel.algos.tree.NaSplitDir;
import hex.genmodel.algos.tree.SharedTreeMojoModel;
import hex.genmodel.easy.CategoricalEncoder;
import hex.genmodel.tools.PredictCsv;
import hex.genmodel.utils.ByteBufferWrapper;
import hex.genmodel.utils.GenmodelBitSet;
import java.io.BufferedWriter;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.RandomAccessFile;
import java.lang.reflect.Field;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.Charset;
import java.nio.file.Files;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Usage: ParallelPredictCsv MOJO INPUT OUTPUT THREADS
 *
 * <p>Writes exactly what {@code PredictCsv --mojo MOJO --input INPUT --output OUTPUT --decimal} writes
 * (H2O's own single-threaded scorer), with THREADS threads over byte ranges of INPUT cut at line
 * ends. For Binomial, Multinomial and Regression MOJOs without an offset column the rows are read
 * without PredictCsv's per-row map: each cell goes straight to the model's column index and
 * categorical encoder (the ones {@code EasyPredictModelWrapper} builds, with unknown levels as NA),
 * then {@code score0}, then PredictCsv's output format. GBM and DRF trees are decoded once
 * ({@link DecodedTrees}) instead of walked in their compressed bytes for every row, and each tree
 * walks a block of rows at a time (profiled: the walk was three quarters of a thread's time, and
 * a tree's nodes stay in cache over its block). Other models, and inputs whose records span
 * lines, are scored by PredictCsv itself (one per range, or one over the whole file). Records
 * spanning lines are found only on the direct path: for other models each range must hold whole
 * records, as for any line-based split.
 */
public class ParallelPredictCsv {
  static final Charset CHARSET = Charset.defaultCharset();  // PredictCsv's FileReader and FileWriter
  /**
   * opencsv 2.3 carries one flag from the end of a line into the next (it changes how a line
   * starting with {@code ""} is read): the workers keep it as PredictCsv's single parser would.
   */
  static final Field IN_FIELD = inFieldFlag();

  static Field inFieldFlag() {
    try {
      Field f = CSVParser.class.getDeclaredField("inField");
      f.setAccessible(true);
      return f;
    } catch (ReflectiveOperationException | RuntimeException e) {
      return null;  // another opencsv: the whole file goes to PredictCsv
    }
  }

  /** A record that PredictCsv would read across lines: the whole file goes to PredictCsv instead. */
  static final class MultiLineRecord extends RuntimeException {
    MultiLineRecord() { super(null, null, false, false); }
  }

  public static void main(String[] args) {
    if (args.length != 4) {
      System.err.println("usage: ParallelPredictCsv MOJO INPUT OUTPUT THREADS");
      System.exit(2);
    }
    File output = new File(args[2]);
    try {
      GenModel model = MojoModel.load(args[0]);
      ParallelPredictCsv scorer = new ParallelPredictCsv(model, new File(args[1]), output, Integer.parseInt(args[3]));
      scorer.run();
      System.err.println("ParallelPredictCsv: " + scorer.how);
    } catch (Throwable e) {
      output.delete();
      System.err.println("Prediction failed: " + e);
      for (Throwable c = e.getCause(); c != null; c = c.getCause()) System.err.println("  caused by: " + c);
      System.exit(1);
    }
    System.exit(0);
  }

  final GenModel m;
  final File input;
  final File output;
  final int threads;
  final ModelCategory category;
  String how = "";  // which way the rows were scored, reported on stderr

  ParallelPredictCsv(GenModel m, File input, File output, int threads) {
    this.m = m;
    this.input = input;
    this.output = output;
    this.threads = Math.max(1, threads);
    this.category = m.getModelCategory();
  }

  boolean direct() {
    return (category == ModelCategory.Binomial || category == ModelCategory.Multinomial
            || category == ModelCategory.Regression)
        && m.getOffsetName() == null && !(m instanceof ConverterFactoryProvidingModel) && IN_FIELD != null;
  }

  void run() throws Exception {
    long size = input.length();
    long bodyStart;
    String headerLine;
    try (FileInputStream in = new FileInputStream(input)) {
      LineReader r = new LineReader(in.getChannel(), 0, size);
      headerLine = r.next();
      bodyStart = r.position();
    } catch (MultiLineRecord e) {
      viaPredictCsv(null);
      return;
    }
    if (headerLine == null) throw new IOException("Input dataset file is empty!");
    CSVParser headerParser = new CSVParser(',');
    String[] header = headerParser.parseLineMulti(headerLine);
    if (headerParser.isPending()) {
      viaPredictCsv(null);
      return;
    }
    long[] bounds;
    try {
      bounds = bounds(bodyStart, size);
    } catch (MultiLineRecord e) {
      viaPredictCsv(null);
      return;
    }
    if (!direct()) {
      viaPredictCsv(bounds);
      return;
    }
    boolean headerInField = IN_FIELD.getBoolean(headerParser);
    Converter conv = new Converter(m, header);
    DecodedTrees trees = DecodedTrees.of(m);
    how = (bounds.length - 1) + " range(s), " + (trees != null ? trees.describe() : "the model's score0");
    int n = bounds.length - 1;
    File[] parts = new File[n];
    for (int i = 0; i < n; i++) {
      parts[i] = i == 0 ? output : new File(output.getPath() + ".part" + i);
    }
    ExecutorService pool = Executors.newFixedThreadPool(n);
    Throwable failed = null;
    try {
      List<Future<?>> done = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        final int k = i;
        done.add(pool.submit(() -> {
          score(conv, trees, bounds[k], bounds[k + 1], parts[k], k == 0, headerInField);
          return null;
        }));
      }
      for (Future<?> f : done) f.get();
    } catch (java.util.concurrent.ExecutionException e) {
      failed = e.getCause();
    } finally {
      pool.shutdownNow();  // the other ranges stop before their parts are removed
      pool.awaitTermination(1, java.util.concurrent.TimeUnit.MINUTES);
    }
    if (failed != null) {
      for (File p : parts) p.delete();
      if (failed instanceof MultiLineRecord) {
        viaPredictCsv(null);
        return;
      }
      throw failed instanceof Exception ? (Exception) failed : new Exception(failed);
    }
    append(output, parts);
  }

  /**
   * Line starts cutting the body into at most {@code threads} ranges ('\n' ended lines). A range
   * starts at a line that opencsv reads the same whatever came before (non-empty, no escapes,
   * quotes only around whole cells), so each range can be read on its own.
   */
  long[] bounds(long bodyStart, long size) throws IOException {
    List<Long> b = new ArrayList<>();
    b.add(bodyStart);
    try (FileInputStream in = new FileInputStream(input)) {
      FileChannel ch = in.getChannel();
      for (int i = 1; i < threads; i++) {
        long pos = Math.max(bodyStart + (size - bodyStart) * i / threads, b.get(b.size() - 1));
        LineReader lines = new LineReader(ch, pos, size);
        lines.next();  // to the end of the line the cut fell into
        long cut = lines.position();
        for (int tries = 0; tries < 10_000 && cut < size; tries++) {
          String line = lines.next();
          if (line == null || (!line.isEmpty() && split(line) != null)) break;
          cut = lines.position();
        }
        if (cut > b.get(b.size() - 1) && cut < size) b.add(cut);
      }
    }
    b.add(size);
    long[] out = new long[b.size()];
    for (int i = 0; i < out.length; i++) out[i] = b.get(i);
    return out;
  }

  /** opencsv's flag after a line {@link #split} read: set by a last cell of plain text, cleared by a quote or a comma. */
  static boolean endsInField(String line, boolean before) {
    if (line.isEmpty()) return before;
    char last = line.charAt(line.length() - 1);
    return last != '"' && last != ',';
  }

  /** Feature columns of the model for each input column, with the wrapper's own encoders. */
  static final class Converter {
    final int nfeatures;
    final int[] index;
    final CategoricalEncoder[] encoders;
    final String[] names;

    Converter(GenModel m, String[] header) {
      CategoricalEncoding enc = m.getCategoricalEncoding();
      Map<String, Integer> columns = enc.createColumnMapping(m);
      Map<Integer, CategoricalEncoder> domains = enc.createCategoricalEncoders(m, columns);
      nfeatures = m.nfeatures();
      names = header;
      index = new int[header.length];
      encoders = new CategoricalEncoder[header.length];
      for (int c = 0; c < header.length; c++) {
        Integer idx = columns.get(header[c]);
        index[c] = idx == null || idx >= nfeatures ? -1 : idx;
        encoders[c] = index[c] < 0 ? null : domains.get(idx);
      }
    }

    /** PredictCsv's formatDataRow and RowToRawDataConverter.convert, by column position. */
    void fill(String[] cells, double[] raw) {
      Arrays.fill(raw, Double.NaN);
      int max = Math.min(index.length, cells.length);
      for (int c = 0; c < max; c++) {
        int idx = index[c];
        String s = cells[c];
        if (idx < 0 || s.isEmpty() || s.equals("NA") || s.equals("N/A") || s.equals("-")) continue;
        CategoricalEncoder e = encoders[c];
        if (e == null) {
          String t = s.trim();
          try {
            raw[idx] = Double.parseDouble(t);
          } catch (NumberFormatException nfe) {
            throw new IllegalArgumentException("Unable to parse value: " + t + ", from column: " + names[c]
                + ", as Double; " + nfe.getMessage());
          }
        } else if (!e.encodeCatValue(s, raw)) {
          e.encodeNA(raw);
        }
      }
    }
  }

  /** Rows converted, then scored together: each decoded tree walks a block's rows while its nodes are in cache. */
  static final int BLOCK = 256;

  void score(Converter conv, DecodedTrees trees, long lo, long hi, File part, boolean header, boolean headerInField)
      throws Exception {
    boolean regression = category == ModelCategory.Regression;
    String[] domain = regression ? null : m.getDomainValues(m.getResponseIdx());
    int nclasses = regression ? 0 : m.getNumResponseClasses();
    if (domain == null && category == ModelCategory.Binomial && nclasses == 2) {
      domain = new String[] {"0", "1"};  // quasibinomial, as EasyPredictModelWrapper
    }
    double[][] raw = new double[BLOCK][m.nfeatures()];
    double[][] preds = new double[BLOCK][m.getPredsSize(category)];
    double[][] out = new double[BLOCK][];
    CSVParser parser = new CSVParser(',');
    boolean inField = headerInField;  // a later range starts at a simple line: the flag does not matter there
    long row = 0;
    int filled = 0;
    try (FileInputStream in = new FileInputStream(input);
         BufferedWriter w = new BufferedWriter(new OutputStreamWriter(new FileOutputStream(part), CHARSET), 1 << 16)) {
      if (header) {
        String[] names = m.getOutputNames();
        w.write(String.join(",", names));
        w.write('\n');
      }
      LineReader lines = new LineReader(in.getChannel(), lo, hi);
      String line;
      while (true) {
        line = lines.next();
        if (line != null) {
          row++;
          String[] cells = split(line);
          if (cells != null) {
            inField = endsInField(line, inField);
          } else {
            IN_FIELD.setBoolean(parser, inField);
            cells = parser.parseLineMulti(line);
            if (parser.isPending()) throw new MultiLineRecord();
            inField = IN_FIELD.getBoolean(parser);
          }
          try {
            conv.fill(cells, raw[filled]);
          } catch (RuntimeException e) {
            throw new Exception("data row " + (rowsBefore(lo) + row) + " of " + input + ": " + e.getMessage(), e);
          }
          filled++;
        }
        if (filled == BLOCK || (line == null && filled > 0)) {
          long first = row - filled + 1;
          try {
            if (trees != null) {
              trees.scoreBlock(raw, filled, preds, out);
            } else {
              for (int r = 0; r < filled; r++) {
                Arrays.fill(preds[r], 0);
                out[r] = m.requiresOffset() ? m.score0(raw[r], 0, preds[r]) : m.score0(raw[r], preds[r]);
              }
            }
          } catch (RuntimeException e) {
            throw new Exception("data rows " + (rowsBefore(lo) + first) + "-" + (rowsBefore(lo) + row) + " of " + input
                + ": " + e.getMessage(), e);
          }
          for (int r = 0; r < filled; r++) {
            double[] p = out[r];
            if (regression) {
              w.write(str(p[0]));
            } else {
              w.write(domain[(int) p[0]]);
              for (int i = 1; i <= nclasses; i++) {
                w.write(',');
                w.write(str(p[i]));
              }
            }
            w.write('\n');
          }
          filled = 0;
        }
        if (line == null) break;
      }
    }
  }

  /**
   * {@code score0} of a GBM or DRF MOJO over its trees decoded once into arrays. H2O's
   * {@code SharedTreeMojoModel.scoreTree} (ScoreTree2) decodes each node's bytes again on every
   * row; this walk takes the same branches, returns the same float leaves, and sums them in the
   * same order before the model's own {@code unifyPreds}, so the predictions are the same doubles.
   */
  static final class DecodedTrees {
    static final int NA_VS_REST = NaSplitDir.NAvsREST.value();
    static final int NA_LEFT = NaSplitDir.NALeft.value();
    static final int LEFT = NaSplitDir.Left.value();

    final SharedTreeMojoModel model;
    final Tree[] trees;  // indexed as the model's compressed trees: class * groups + group
    final int groups;
    final int perGroup;
    final int classOffset;

    DecodedTrees(SharedTreeMojoModel model, Tree[] trees, int groups, int perGroup) {
      this.model = model;
      this.trees = trees;
      this.groups = groups;
      this.perGroup = perGroup;
      this.classOffset = model._nclasses == 1 ? 0 : 1;
    }

    /** The decoded trees of a GBM or DRF MOJO scored with ScoreTree2, else null (the model's own score0). */
    static DecodedTrees of(GenModel m) {
      if (m.getClass() != GbmMojoModel.class && m.getClass() != DrfMojoModel.class) return null;
      SharedTreeMojoModel t = (SharedTreeMojoModel) m;
      if (t._mojo_version == 1.0 || t._mojo_version == 1.1) return null;  // ScoreTree0 and ScoreTree1
      try {
        byte[][] compressed = (byte[][]) field("_compressed_trees").get(t);
        int groups = field("_ntree_groups").getInt(t);
        int perGroup = field("_ntrees_per_group").getInt(t);
        if (compressed == null || compressed.length != groups * perGroup) return null;
        Tree[] trees = new Tree[compressed.length];
        for (int i = 0; i < compressed.length; i++) {
          trees[i] = compressed[i] == null ? null : new Tree(compressed[i], t._domains);
        }
        return new DecodedTrees(t, trees, groups, perGroup);
      } catch (ReflectiveOperationException | RuntimeException | StackOverflowError | OutOfMemoryError e) {
        return null;  // another genmodel layout, a node this walk does not cover, or trees too big to hold twice
      }
    }

    /** Nodes by kind over all trees, for the report: numeric, bitset, bitset with offset, NA vs rest. */
    String describe() {
      int[] counts = new int[4];
      for (Tree tree : trees) {
        if (tree == null) continue;
        for (int n = 0; n < tree.nodes; n++) {
          counts[tree.kind[n] == Tree.NUMERIC ? 0 : tree.kind[n] == Tree.NA_VS_REST ? 3 : tree.offsetBits[n] ? 2 : 1]++;
        }
      }
      return trees.length + " decoded trees (nodes: " + counts[0] + " numeric, " + counts[1] + " bitset, " + counts[2]
          + " offset bitset, " + counts[3] + " NA-vs-rest)";
    }

    static Field field(String name) throws NoSuchFieldException {
      Field f = SharedTreeMojoModel.class.getDeclaredField(name);
      f.setAccessible(true);
      return f;
    }

    /**
     * GbmMojoModel/DrfMojoModel.score0 (scoreAllTrees, then unifyPreds with offset 0) of rows
     * {@code [0, count)}, into {@code out}: tree by tree over the block, each row's sums taken in
     * score0's order (the same doubles).
     */
    void scoreBlock(double[][] rows, int count, double[][] preds, double[][] out) {
      for (int r = 0; r < count; r++) Arrays.fill(preds[r], 0);
      for (int c = 0; c < perGroup; c++) {
        int k = classOffset + c;
        int itree = c * groups;
        for (int g = 0; g < groups; g++, itree++) {
          Tree tree = trees[itree];
          if (tree == null) continue;
          for (int r = 0; r < count; r++) preds[r][k] += tree.score(rows[r]);
        }
      }
      for (int r = 0; r < count; r++) out[r] = model.unifyPreds(rows[r], 0.0, preds[r]);
    }
  }

  /** One tree: nodes in arrays, a child index below zero is {@code ~leaf}. */
  static final class Tree {
    static final byte NUMERIC = 0;
    static final byte BITSET = 1;
    static final byte NA_VS_REST = 2;

    int[] col = new int[16];
    byte[] kind = new byte[16];
    boolean[] leftward = new boolean[16];
    float[] split = new float[16];
    GenmodelBitSet[] bits = new GenmodelBitSet[16];
    boolean[] offsetBits = new boolean[16];  // a bitset read by fill3 (bit offset and length in the tree)
    int[] domainLength = new int[16];  // -1: not a categorical column
    int[] left = new int[16];
    int[] right = new int[16];
    int[] child;  // left and right of node n at 2n and 2n + 1, set once decoded
    boolean[] plain;  // a numeric split of a column without a domain
    int[] naRight;  // 1 where NA goes right
    float[] leaves = new float[16];
    int nodes;
    int nleaves;
    final int root;

    Tree(byte[] tree, String[][] domains) {
      root = decode(tree, 0, domains);
      child = new int[2 * nodes];
      plain = new boolean[nodes];
      naRight = new int[nodes];
      for (int n = 0; n < nodes; n++) {
        child[2 * n] = left[n];
        child[2 * n + 1] = right[n];
        plain[n] = kind[n] == NUMERIC && bits[n] == null && domainLength[n] < 0;
        naRight[n] = leftward[n] ? 0 : 1;
      }
    }

    /** SharedTreeMojoModel.scoreTree(tree, row, false, domains), node by node. */
    double score(double[] row) {
      int n = root;
      while (n >= 0) {
        if (plain[n]) {  // a numeric split of a numeric column: NaN fails both tests and goes its NA way
          double d = row[col[n]];
          float s = split[n];
          n = child[(n << 1) | (d >= s ? 1 : d < s ? 0 : naRight[n])];
          continue;
        }
        double d = row[col[n]];
        GenmodelBitSet b = bits[n];
        int dl = domainLength[n];
        boolean goRight;
        if (Double.isNaN(d) || (b != null && !b.isInRange((int) d)) || (dl >= 0 && dl <= (int) d)) {
          goRight = !leftward[n];
        } else {
          goRight = kind[n] != NA_VS_REST && (b == null ? d >= split[n] : b.contains((int) d));
        }
        n = goRight ? right[n] : left[n];
      }
      return leaves[~n];
    }

    /** The node at {@code pos} of ScoreTree2's layout and its subtrees; returns its index or {@code ~leaf}. */
    int decode(byte[] tree, int pos, String[][] domains) {
      ByteBufferWrapper ab = at(tree, pos);
      int nodeType = ab.get1U();
      int colId = ab.get2();
      if (colId == 65535) return leaf(ab.get4f());
      int naSplitDir = ab.get1U();
      boolean naVsRest = naSplitDir == DecodedTrees.NA_VS_REST;
      int lmask = nodeType & 51;
      int equal = nodeType & 12;
      if (equal == 4) throw new IllegalStateException("4-byte bitsets are not supported");
      float splitVal = -1;
      GenmodelBitSet bs = null;
      if (!naVsRest) {
        if (equal == 0) {
          splitVal = ab.get4f();
        } else {
          bs = new GenmodelBitSet(0);
          if (equal == 8) bs.fill2(tree, ab);
          else bs.fill3(tree, ab);
        }
      } else if (equal != 0) {
        throw new IllegalStateException("H2O tests such a node against the previous node's bitset");
      }
      int n = node();
      col[n] = colId;
      kind[n] = naVsRest ? NA_VS_REST : bs != null ? BITSET : NUMERIC;
      leftward[n] = naSplitDir == DecodedTrees.NA_LEFT || naSplitDir == DecodedTrees.LEFT;
      split[n] = splitVal;
      bits[n] = bs;
      offsetBits[n] = equal == 12 && !naVsRest;
      domainLength[n] = domains != null && domains[colId] != null ? domains[colId].length : -1;
      int sizeAt = ab.position();
      int rightAt;
      switch (lmask) {
        case 0: rightAt = ab.get1U(); break;
        case 1: rightAt = ab.get2(); break;
        case 2: rightAt = ab.get3(); break;
        case 3: rightAt = ab.get4(); break;
        case 48: rightAt = 4; break;  // the left leaf's float
        default: throw new IllegalStateException("illegal lmask value " + lmask);
      }
      rightAt += ab.position();
      int l = lmask == 48 ? leaf(at(tree, sizeAt).get4f()) : decode(tree, sizeAt + lmask + 1, domains);
      int rmask = (nodeType & 0xC0) >> 2;
      int r = (rmask & 16) != 0 ? leaf(at(tree, rightAt).get4f()) : decode(tree, rightAt, domains);
      left[n] = l;
      right[n] = r;
      return n;
    }

    static ByteBufferWrapper at(byte[] tree, int pos) {
      ByteBufferWrapper ab = new ByteBufferWrapper(tree);
      ab.skip(pos);
      return ab;
    }

    int node() {
      if (nodes == col.length) {
        int size = nodes * 2;
        col = Arrays.copyOf(col, size);
        kind = Arrays.copyOf(kind, size);
        leftward = Arrays.copyOf(leftward, size);
        split = Arrays.copyOf(split, size);
        bits = Arrays.copyOf(bits, size);
        offsetBits = Arrays.copyOf(offsetBits, size);
        domainLength = Arrays.copyOf(domainLength, size);
        left = Arrays.copyOf(left, size);
        right = Arrays.copyOf(right, size);
      }
      return nodes++;
    }

    int leaf(float value) {
      if (nleaves == leaves.length) leaves = Arrays.copyOf(leaves, nleaves * 2);
      leaves[nleaves] = value;
      return ~nleaves++;
    }
  }

  static String str(double d) {
    return Double.isNaN(d) ? "NA" : Double.toString(d);
  }

  /**
   * The fields of a line as opencsv splits it, for lines without escapes whose quoted fields are
   * whole fields with no quote or separator inside ({@code "AA"}); null for any other line.
   */
  static String[] split(String line) {
    if (line.indexOf('\\') >= 0) return null;  // opencsv's escape character
    int n = 1;
    for (int i = 0; i < line.length(); i++) if (line.charAt(i) == ',') n++;
    String[] cells = new String[n];
    int start = 0;
    for (int c = 0; c < n; c++) {
      int end = c == n - 1 ? line.length() : line.indexOf(',', start);
      int q = line.indexOf('"', start);
      if (q < 0 || q >= end) {
        cells[c] = line.substring(start, end);
      } else if (q == start && end - start > 2 && line.charAt(end - 1) == '"' && line.indexOf('"', start + 1) == end - 1) {
        cells[c] = line.substring(start + 1, end - 1);
      } else {
        return null;
      }
      start = end + 1;
    }
    return cells;
  }

  long rowsBefore(long pos) {
    try (FileInputStream in = new FileInputStream(input)) {
      LineReader r = new LineReader(in.getChannel(), 0, pos);
      long n = -1;  // the header
      while (r.next() != null) n++;
      return n;
    } catch (IOException e) {
      return -1;
    }
  }

  /** The lines starting in [lo, hi), '\n' or "\r\n" ended (a lone '\r' is a MultiLineRecord: BufferedReader splits there). */
  static final class LineReader {
    final FileChannel ch;
    final long hi;
    long pos;
    final ByteBuffer buf = ByteBuffer.allocate(1 << 20);
    byte[] line = new byte[256];

    LineReader(FileChannel ch, long lo, long hi) {
      this.ch = ch;
      this.pos = lo;
      this.hi = hi;
      buf.limit(0);
    }

    long position() {
      return pos;
    }

    String next() throws IOException {
      if (pos >= hi) return null;
      int len = 0;
      while (true) {
        if (!buf.hasRemaining()) {
          buf.clear();
          int r = ch.read(buf, pos + len);
          buf.flip();
          if (r <= 0) break;  // end of file without a final newline
        }
        byte b = buf.get();
        if (b == '\n') {
          pos += len + 1;
          return text(len);
        }
        if (len == line.length) line = Arrays.copyOf(line, len * 2);
        line[len++] = b;
      }
      pos += len;
      return text(len);
    }

    String text(int len) {
      if (len > 0 && line[len - 1] == '\r') len--;
      for (int i = 0; i < len; i++) if (line[i] == '\r') throw new MultiLineRecord();
      return new String(line, 0, len, CHARSET);
    }
  }

  /** Models the direct path does not cover: PredictCsv itself on each range (a copy of it with the header). */
  void viaPredictCsv(long[] bounds) throws Exception {
    if (bounds == null) {  // the whole file, read by PredictCsv itself
      how = "PredictCsv over the whole file";
      PredictCsv.make(new String[] {"--embedded", "--input", input.getPath(), "--output", output.getPath(), "--decimal"},
                      m).run();
      return;
    }
    if (bounds.length > 2 && hasQuote()) {  // a quoted cell may hold a line end: no safe cut
      viaPredictCsv(null);
      return;
    }
    int n = bounds.length - 1;
    how = "PredictCsv on " + n + " range(s)";
    File dir = Files.createTempDirectory(output.getAbsoluteFile().getParentFile().toPath(), ".predict-").toFile();
    try {
      byte[] header;
      try (RandomAccessFile f = new RandomAccessFile(input, "r")) {
        header = new byte[(int) bounds[0]];
        f.readFully(header);
      }
      File[] ins = new File[n];
      File[] outs = new File[n];
      ExecutorService pool = Executors.newFixedThreadPool(n);
      try {
        List<Future<?>> done = new ArrayList<>();
        for (int i = 0; i < n; i++) {
          ins[i] = new File(dir, "in-" + i + ".csv");
          outs[i] = new File(dir, "out-" + i + ".csv");
          try (FileChannel src = FileChannel.open(input.toPath());
               FileChannel dst = FileChannel.open(ins[i].toPath(), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            dst.write(ByteBuffer.wrap(header));
            transfer(src, bounds[i], bounds[i + 1] - bounds[i], dst);
          }
          PredictCsv p = PredictCsv.make(new String[] {"--embedded", "--input", ins[i].getPath(),
                                                     "--output", outs[i].getPath(), "--decimal"}, m);
          done.add(pool.submit(() -> { p.run(); return null; }));
        }
        for (Future<?> f : done) f.get();
      } finally {
        pool.shutdownNow();
      }
      Files.copy(outs[0].toPath(), output.toPath(), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      for (int i = 1; i < n; i++) {  // without their headers
        try (FileChannel src = FileChannel.open(outs[i].toPath());
             FileChannel dst = FileChannel.open(output.toPath(), StandardOpenOption.APPEND)) {
          long skip = headerLength(outs[i]);
          transfer(src, skip, src.size() - skip, dst);
        }
      }
    } finally {
      File[] left = dir.listFiles();
      if (left != null) for (File f : left) f.delete();
      dir.delete();
    }
  }

  boolean hasQuote() throws IOException {
    try (FileInputStream in = new FileInputStream(input)) {
      byte[] buf = new byte[1 << 20];
      for (int r; (r = in.read(buf)) > 0; ) {
        for (int i = 0; i < r; i++) if (buf[i] == '"') return true;
      }
    }
    return false;
  }

  static long headerLength(File f) throws IOException {
    try (FileInputStream in = new FileInputStream(f)) {
      LineReader r = new LineReader(in.getChannel(), 0, f.length());
      r.next();
      return r.position();
    }
  }

  static void append(File output, File[] parts) throws IOException {
    try (FileChannel dst = FileChannel.open(output.toPath(), StandardOpenOption.APPEND)) {
      for (int i = 1; i < parts.length; i++) {
        try (FileChannel src = FileChannel.open(parts[i].toPath())) {
          transfer(src, 0, src.size(), dst);
        }
        parts[i].delete();
      }
    }
  }

  static void transfer(FileChannel src, long from, long count, FileChannel dst) throws IOException {
    long done = 0;
    while (done < count) done += src.transferTo(from + done, count - done, dst);
  }
}
