package h2o_airflow.hive;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;
import hex.genmodel.easy.EasyPredictModelWrapper;
import hex.genmodel.easy.RowData;
import hex.genmodel.easy.prediction.BinomialModelPrediction;
import hex.genmodel.easy.prediction.MultinomialModelPrediction;
import hex.genmodel.easy.prediction.RegressionModelPrediction;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.hadoop.hive.ql.exec.Description;
import org.apache.hadoop.hive.ql.exec.UDFArgumentException;
import org.apache.hadoop.hive.ql.metadata.HiveException;
import org.apache.hadoop.hive.ql.udf.generic.GenericUDF;
import org.apache.hadoop.hive.serde2.objectinspector.ConstantObjectInspector;
import org.apache.hadoop.hive.serde2.objectinspector.ObjectInspector;
import org.apache.hadoop.hive.serde2.objectinspector.ObjectInspectorFactory;
import org.apache.hadoop.hive.serde2.objectinspector.PrimitiveObjectInspector;
import org.apache.hadoop.hive.serde2.objectinspector.StructField;
import org.apache.hadoop.hive.serde2.objectinspector.StructObjectInspector;
import org.apache.hadoop.hive.serde2.objectinspector.primitive.PrimitiveObjectInspectorFactory;

/**
 * Scores rows with any H2O MOJO: {@code h2o_predict('/path/model.zip', struct(col1, col2, ...))}.
 *
 * <p>The first argument is a constant path to the MOJO (a local path, or the name of a file added
 * with {@code ADD FILE}); the model is loaded once per JVM and digest, so a retrained champion is a
 * new path, never a new jar. The second is a struct whose field names are the model's feature
 * names ({@code struct(...)} names them after the columns; {@code named_struct} renames).
 *
 * <p>The result is {@code struct<predict, probabilities: array<double>, unseen_levels: int,
 * unseen_features: array<string>>}: the predicted class (text) or value (double), each class's
 * probability in the label's order (empty for a regression), how many of the row's categorical values
 * the model never saw, and the features that held them. The row is
 * given to the model as PredictCsv gives a CSV row: each present value as its text, missing values
 * left out, unseen levels scored as missing; so the numbers are PredictCsv's.
 */
@Description(name = "h2o_predict",
    value = "_FUNC_(mojo_path, struct(features...)) - the H2O MOJO's prediction of the row: "
        + "struct<predict, probabilities array<double>, unseen_levels int, unseen_features array<string>>")
public class H2OPredict extends GenericUDF {
  /** Models kept per JVM (system property {@code h2o.predict.models}, default 8): a long-lived server sees a new
   * champion every retrain, so the least recently used model goes; a query in flight keeps its own reference. */
  static final int MAX_MODELS = Integer.getInteger("h2o.predict.models", 8);
  private static final Map<String, GenModel> MODELS = Collections.synchronizedMap(
      new LinkedHashMap<String, GenModel>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, GenModel> eldest) {
          return size() > Math.max(1, MAX_MODELS);
        }
      });

  private transient EasyPredictModelWrapper wrapper;
  private transient ModelCategory category;
  private transient StructObjectInspector input;
  private transient String[] features;
  private transient StructField[] fields;
  private transient boolean[] categorical;
  private transient List<Set<String>> domains;

  @Override
  public ObjectInspector initialize(ObjectInspector[] arguments) throws UDFArgumentException {
    if (arguments.length != 2) {
      throw new UDFArgumentException("h2o_predict takes 2 arguments (mojo_path, struct(features...)), not "
          + arguments.length);
    }
    if (!(arguments[0] instanceof ConstantObjectInspector)) {
      throw new UDFArgumentException("h2o_predict: the first argument, the MOJO's path, must be a constant string");
    }
    if (!(arguments[1] instanceof StructObjectInspector)) {
      throw new UDFArgumentException("h2o_predict: the second argument must be struct(...) of the model's features, "
          + "not " + arguments[1].getTypeName());
    }
    String path = String.valueOf(((ConstantObjectInspector) arguments[0]).getWritableConstantValue());
    GenModel model = load(path);
    category = model.getModelCategory();
    if (category != ModelCategory.Binomial && category != ModelCategory.Multinomial
        && category != ModelCategory.Regression) {
      throw new UDFArgumentException("h2o_predict: " + path + " is a " + category
          + " model; binomial, multinomial and regression models are supported");
    }
    input = (StructObjectInspector) arguments[1];
    Map<String, StructField> byName = new HashMap<>();
    for (StructField f : input.getAllStructFieldRefs()) {
      byName.put(f.getFieldName().toLowerCase(), f);
    }
    int n = model.getNumCols();
    features = Arrays.copyOf(model.getNames(), n);
    fields = new StructField[n];
    categorical = new boolean[n];
    domains = new ArrayList<>(n);
    List<String> missing = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      fields[i] = byName.get(features[i].toLowerCase());  // Hive lower-cases field names
      if (fields[i] == null) {
        missing.add(features[i]);
      } else if (!(fields[i].getFieldObjectInspector() instanceof PrimitiveObjectInspector)) {
        throw new UDFArgumentException("h2o_predict: feature " + features[i] + " must be a primitive column, not "
            + fields[i].getFieldObjectInspector().getTypeName());
      }
      String[] domain = model.getDomainValues(i);
      categorical[i] = domain != null;
      domains.add(domain == null ? null : new HashSet<>(Arrays.asList(domain)));
    }
    if (!missing.isEmpty()) {
      throw new UDFArgumentException("h2o_predict: the struct lacks the model's feature(s) " + missing
          + " (it has " + byName.keySet() + "); pass struct(" + String.join(", ", features) + ")");
    }
    wrapper = new EasyPredictModelWrapper(new EasyPredictModelWrapper.Config()
        .setModel(model).setConvertUnknownCategoricalLevelsToNa(true).setConvertInvalidNumbersToNa(false));
    List<String> names = Arrays.asList("predict", "probabilities", "unseen_levels", "unseen_features");
    List<ObjectInspector> types = Arrays.asList(
        category == ModelCategory.Regression
            ? PrimitiveObjectInspectorFactory.javaDoubleObjectInspector
            : PrimitiveObjectInspectorFactory.javaStringObjectInspector,
        ObjectInspectorFactory.getStandardListObjectInspector(PrimitiveObjectInspectorFactory.javaDoubleObjectInspector),
        PrimitiveObjectInspectorFactory.javaIntObjectInspector,
        ObjectInspectorFactory.getStandardListObjectInspector(PrimitiveObjectInspectorFactory.javaStringObjectInspector));
    return ObjectInspectorFactory.getStandardStructObjectInspector(names, types);
  }

  /** The MOJO at {@code path} (or under the task's working directory), loaded once per digest. */
  static GenModel load(String path) throws UDFArgumentException {
    File file = new File(path);
    if (!file.isFile()) {
      file = new File(new File(path).getName());  // ADD FILE: the task's working directory
    }
    if (!file.isFile()) {
      throw new UDFArgumentException("h2o_predict: no MOJO at " + path + " (give a local path, or ADD FILE it)");
    }
    String digest = sha256(file);
    GenModel model = MODELS.get(digest);
    if (model == null) {
      try {
        model = MojoModel.load(file.getPath());
      } catch (IOException e) {
        throw new UDFArgumentException("h2o_predict: " + path + " is not a MOJO: " + e);
      }
      GenModel raced = MODELS.putIfAbsent(digest, model);
      model = raced != null ? raced : model;
    }
    return model;
  }

  /** How many models this JVM holds (for tests). */
  static int cachedModels() {
    return MODELS.size();
  }

  private static String sha256(File file) throws UDFArgumentException {
    try (InputStream in = Files.newInputStream(file.toPath())) {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      byte[] buf = new byte[1 << 16];
      for (int r = in.read(buf); r > 0; r = in.read(buf)) {
        md.update(buf, 0, r);
      }
      StringBuilder hex = new StringBuilder();
      for (byte b : md.digest()) {
        hex.append(String.format("%02x", b));
      }
      return hex.toString();
    } catch (IOException | NoSuchAlgorithmException e) {
      throw new UDFArgumentException("h2o_predict: cannot read " + file + ": " + e);
    }
  }

  /** A value as PredictCsv reads it from the offline scorer's CSV: whole numbers without ".0". */
  static String text(Object value) {
    if (value instanceof Double || value instanceof Float) {
      double d = ((Number) value).doubleValue();
      if (d == Math.rint(d) && !Double.isInfinite(d) && Math.abs(d) < 1e15) {
        return Long.toString((long) d);
      }
      return Double.toString(d);
    }
    return String.valueOf(value);
  }

  @Override
  public Object evaluate(DeferredObject[] arguments) throws HiveException {
    Object struct = arguments[1].get();
    RowData row = new RowData();
    List<String> unseen = new ArrayList<>();
    for (int i = 0; i < features.length; i++) {
      Object raw = struct == null ? null : input.getStructFieldData(struct, fields[i]);
      Object value = raw == null ? null
          : ((PrimitiveObjectInspector) fields[i].getFieldObjectInspector()).getPrimitiveJavaObject(raw);
      if (value == null) {
        continue;  // missing, as PredictCsv leaves an empty cell out
      }
      String cell = text(value);
      if (categorical[i] && !domains.get(i).contains(cell)) {
        unseen.add(features[i]);
      }
      row.put(features[i], cell);
    }
    try {
      Object[] out = new Object[4];
      out[2] = unseen.size();
      out[3] = unseen;
      if (category == ModelCategory.Regression) {
        RegressionModelPrediction p = wrapper.predictRegression(row);
        out[0] = p.value;
        out[1] = new ArrayList<Double>();
      } else {
        String label;
        double[] probabilities;
        if (category == ModelCategory.Binomial) {
          BinomialModelPrediction p = wrapper.predictBinomial(row);
          label = p.label;
          probabilities = p.classProbabilities;
        } else {
          MultinomialModelPrediction p = wrapper.predictMultinomial(row);
          label = p.label;
          probabilities = p.classProbabilities;
        }
        List<Double> list = new ArrayList<>(probabilities.length);
        for (double d : probabilities) {
          list.add(d);
        }
        out[0] = label;
        out[1] = list;
      }
      return Arrays.asList(out);
    } catch (Exception e) {
      throw new HiveException("h2o_predict: cannot score row " + row + ": " + e, e);
    }
  }

  @Override
  public String getDisplayString(String[] children) {
    return "h2o_predict(" + String.join(", ", children) + ")";
  }
}
