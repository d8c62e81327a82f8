-- The delivered line a version came from: with file_id it names the item in that file's bronze
-- (lineage, and the tie-break of duplicates within a delivery). NULL for versions written before
-- this migration and for deletion markers, which no line delivered.
ALTER TABLE records ADD COLUMN line_no INTEGER;
