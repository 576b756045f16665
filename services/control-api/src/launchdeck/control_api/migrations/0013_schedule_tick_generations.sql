-- A schedule's `generation` action makes a generation job per tick; the tick names that job so
-- its outcome follows the job's status (queued, running, then how it ended), as a build or run
-- tick follows its build or run. Without it such a tick stayed `queued` for ever.
ALTER TABLE schedule_ticks
    ADD COLUMN generation_id uuid REFERENCES generation_jobs(id) ON DELETE SET NULL;
-- ON DELETE SET NULL looks ticks up by their job.
CREATE INDEX schedule_ticks_generation_idx ON schedule_ticks (generation_id)
    WHERE generation_id IS NOT NULL;
