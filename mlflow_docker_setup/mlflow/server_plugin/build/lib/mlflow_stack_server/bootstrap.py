"""Run once by serve.sh before a shared server's workers start: MLflow's basic-auth
database (its migrations and first admin) and the brake's table (signin.py).

``mlflow server --app-name basic-auth`` does the first part in its parent process; for
any other app name (this stack's ``stack-shared``) it leaves it to the workers, which then
race to create the same tables and one of them dies. Done here first, the workers find
everything in place.
"""

from mlflow.server.auth import auth_config, bootstrap_admin_user

from .signin import Brake

if __name__ == "__main__":
    bootstrap_admin_user()
    Brake(auth_config.database_uri).create_table()
