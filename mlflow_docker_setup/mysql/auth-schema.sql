-- The first tables of MLflow's basic-auth app (its migration 8606fa83a998), created
-- before MLflow first meets an empty auth database. MLflow's own migration names two
-- foreign keys fk_user_id, which MySQL and MariaDB refuse: constraint names are unique
-- per database (upstream issues mlflow/mlflow#9642 and #10964, open). Finding these
-- tables, MLflow stamps the database at that revision and runs every later migration
-- itself. Drop this file once upstream renames the constraint.
CREATE TABLE users (
    id INTEGER NOT NULL AUTO_INCREMENT,
    username VARCHAR(255),
    password_hash VARCHAR(255),
    is_admin BOOL,
    PRIMARY KEY (id),
    UNIQUE (username)
);
CREATE TABLE experiment_permissions (
    id INTEGER NOT NULL AUTO_INCREMENT,
    experiment_id VARCHAR(255) NOT NULL,
    user_id INTEGER NOT NULL,
    permission VARCHAR(255),
    PRIMARY KEY (id),
    CONSTRAINT fk_user_id FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT unique_experiment_user UNIQUE (experiment_id, user_id)
);
CREATE TABLE registered_model_permissions (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(255) NOT NULL,
    user_id INTEGER NOT NULL,
    permission VARCHAR(255),
    PRIMARY KEY (id),
    CONSTRAINT fk_registered_model_user_id FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT unique_name_user UNIQUE (name, user_id)
);
