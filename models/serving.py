"""The code file of every registered model (MLflow models-from-code).

MLflow runs this file when it loads a model; the fitted state comes from the model's
``state`` artifact (see :meth:`models.pyfunc.DirectionModel.load_context`). Nothing is unpickled.
"""

from mlflow.models import set_model

from models.pyfunc import DirectionModel

set_model(DirectionModel())
